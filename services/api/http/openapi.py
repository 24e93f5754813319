"""OpenAPI for routes that parse their own JSON body (pydantic straight from bytes, for speed)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the route's JSON request body."""
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install_openapi(app: FastAPI, body_models: list[type[BaseModel]]) -> None:
    """Generate the document once, adding the body models (and what they reference) and the bearer scheme."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = doc.setdefault("components", {})
            components["securitySchemes"] = {"apiKey": {
                "type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`",
            }}
            doc["security"] = [{"apiKey": []}]
            schemas = components.setdefault("schemas", {})
            for model in body_models:
                schema = model.model_json_schema(ref_template=_REF, by_alias=True)
                for name, sub in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas[model.__name__] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customize the schema
