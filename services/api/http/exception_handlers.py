"""The one place errors become HTTP: every ConveyorError and framework error as RFC 9457 problems."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from services.api.http.problems import (
    ApiError,
    MalformedRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
    ValidationFailed,
    problem_body,
    problem_response,
)
from services.api.http.responses import ProblemResponse
from services.api.http.validation import field_errors, is_malformed_json
from shared.auth.resolve import AuthenticationError
from shared.errors import ConveyorError, DispatchError, EventPublishError
from shared.logs import job_fields

log = logging.getLogger(__name__)

_UNAVAILABLE = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError, RedisError, OSError, TimeoutError,
)


def to_api_error(exc: Exception) -> ApiError:
    """Map a failure to the problem it is."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AuthenticationError):
        return Unauthenticated(str(exc), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, DispatchError | EventPublishError) or isinstance(exc, _UNAVAILABLE):
        return ServiceUnavailable(
            "a backing store did not answer in time; try again", headers={"Retry-After": "1"}
        )
    if isinstance(exc, ConveyorError):
        return ApiError(str(exc))
    return ApiError()


async def _api_error(request: Request, exc: Exception) -> Response:
    error = to_api_error(exc)
    if error.status >= 500:
        # A job route's failure carries the job's id as a field, so it joins that job's story.
        fields = job_fields(request.path_params.get("job_id"))
        log.error("%s %s failed: %r", request.method, request.url.path, exc, exc_info=exc, extra=fields)
    return problem_response(error, request.url.path)


async def _request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if is_malformed_json(errors):
        return problem_response(MalformedRequest("the body is not valid JSON"), request.url.path)
    problem = ValidationFailed("the request has invalid parameters", errors=field_errors(errors, strip_source=True))
    return problem_response(problem, request.url.path)


def _http_exception(routes: Sequence[BaseRoute]) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        if exc.status_code == 404:
            return problem_response(NotFound(f"no resource at {path}"), path)
        if exc.status_code == 405:
            headers = dict(exc.headers or {})
            # Starlette names the methods of the first route on the path only; a path served by several
            # routes (GET and POST /jobs) must list them all.
            on_path = [r for r in routes if r.matches(request.scope)[0] != Match.NONE]
            methods = {m for r in on_path for m in getattr(r, "methods", None) or ()}
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
            error = MethodNotAllowed(f"{request.method} is not allowed on {path}", headers=headers)
            return problem_response(error, path)
        body = problem_body(exc.status_code, "http-error", str(exc.detail), str(exc.detail), path)
        return ProblemResponse(body, status_code=exc.status_code, headers=exc.headers)

    return handle


def install_exception_handlers(app: FastAPI, routes: Sequence[BaseRoute]) -> None:
    """Register the mappings; unexpected exceptions become a 500 problem (and are logged).

    `routes`: the API's routes, whose methods a 405 on their paths lists in `Allow`.
    """
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception(routes))
    app.add_exception_handler(ConveyorError, _api_error)
    for kind in _UNAVAILABLE:
        app.add_exception_handler(kind, _api_error)
    app.add_exception_handler(Exception, _api_error)
