"""The OpenAPI document: body models for routes that parse their own JSON, problem responses, bearer auth."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from services.api.http.responses import PROBLEM_JSON
from shared.models import CamelModel

_REF = "#/components/schemas/{model}"

# What each problem status means wherever it is answered (a route may say more for its own case).
PROBLEM_MEANINGS: dict[int, str] = {
    400: "The body is empty or not JSON",
    401: "No API key, or an unknown or revoked one (`WWW-Authenticate: Bearer`)",
    403: "The API key lacks the scope this route needs; `detail` names it",
    404: "No such resource of the caller's tenant (another tenant's id answers the same)",
    409: "The resource's state does not allow this",
    413: "The body is over 1 MiB, or a job's payload over 256 KiB",
    415: "The body is not `application/json` (or another `+json` type)",
    422: "Invalid fields or parameters; `errors` names each one",
    429: "The queue is full (its backlog reached its `maxLength`); nothing was stored, not even the "
         "idempotency key. Try again after `Retry-After` seconds (estimated from the queue's drain rate)",
    503: "Postgres or Redis did not answer in time; try again (`Retry-After`)",
}


class FieldErrorView(CamelModel):
    """One field-level message of a problem."""

    field: str
    message: str


class Problem(CamelModel):
    """RFC 9457 problem details; `errors` is always present (empty when no field is to blame)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldErrorView]


def problems(*statuses: int, meanings: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for problem statuses; `meanings` replace the general ones for this route."""
    schema = {"$ref": _REF.format(model=Problem.__name__)}
    said = meanings or {}
    out: dict[int | str, dict[str, Any]] = {
        status: {
            "description": said.get(status, PROBLEM_MEANINGS[status]),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }
    if 429 in out:
        out[429]["headers"] = {"Retry-After": header("Whole seconds to wait before submitting again")}
    return out


def header(description: str, *, required: bool = True) -> dict[str, Any]:
    """A documented response header (a string)."""
    return {"description": description, "required": required, "schema": {"type": "string"}}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the route's JSON request body."""
    schema = {"$ref": _REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _drop_framework_422(doc: dict[str, Any]) -> None:
    # FastAPI documents a 422 of its own shape on every route with parameters; ours answer problem+json
    # and document the 422 where they can answer it.
    framework = _REF.format(model="HTTPValidationError")
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422", {})
            if response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref") == framework:
                del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        doc.get("components", {}).get("schemas", {}).pop(name, None)


def install_openapi(app: FastAPI, body_models: list[type[BaseModel]]) -> None:
    """Generate the document once, adding the body and problem models (and what they reference) and bearer auth."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _drop_framework_422(doc)
            components = doc.setdefault("components", {})
            components["securitySchemes"] = {"apiKey": {
                "type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`",
            }}
            doc["security"] = [{"apiKey": []}]
            schemas = components.setdefault("schemas", {})
            models: list[type[BaseModel]] = [*body_models, Problem]
            for model in models:
                schema = model.model_json_schema(ref_template=_REF, by_alias=True)
                for name, sub in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas[model.__name__] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customize the schema
