"""PATCH bodies: a partial model whose None means "left out", merged into the stored resource and validated whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from services.api.http.problems import ValidationFailed
from services.api.http.validation import field_errors

M = TypeVar("M", bound=BaseModel)


def null_only_for(nullable: set[str]) -> Callable[[dict[str, Any]], None]:
    """A json_schema_extra for a patch model: only the `nullable` fields (camelCase) document `null`.

    The patch's `X | None` fields mean "left out"; `null` passes only where the full model takes it.
    """

    def fix(schema: dict[str, Any]) -> None:
        for name, prop in schema.get("properties", {}).items():
            options = prop.get("anyOf", [])
            if name in nullable or {"type": "null"} not in options:
                continue
            kept = [o for o in options if o != {"type": "null"}]
            del prop["anyOf"]
            if len(kept) == 1:
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
            prop.pop("default", None)  # left out means unchanged, not a default

    return fix


def patched(model: type[M], current: dict[str, Any], patch: BaseModel) -> M:
    """`current` (camelCase, as stored) with the fields the patch set, validated as `model` (a 422 names the field)."""
    merged = {**current, **patch.model_dump(exclude_unset=True, by_alias=True)}
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise ValidationFailed(errors=field_errors(exc.errors())) from None
