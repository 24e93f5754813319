"""The HTTP edge: app factory, middleware, dependencies, callers, problem details, OpenAPI."""
