"""Constrained field types of the request models: what each accepts, and the JSON schema that says so.

Each type's document is exactly as strict as its validation (test_openapi_contract holds them to it).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Union
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from typing_extensions import TypeAliasType

from shared.models import DEFAULT_PRIORITY, PRIORITY_WORDS

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
# Postgres text cannot hold U+0000, and control characters in labels are always a mistake.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
# An absolute http(s) URL with an ASCII host (IDN hosts in punycode), optional user info and port: exactly
# what _http_url accepts, so the document's pattern is the rule (a generated client can check it too).
# Explicit ASCII classes: `\s` and case folding differ between regex engines (ECMA, Rust, Python).
HTTP_URL = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._~!$&'()*+,;=:%-]+@)?[A-Za-z0-9._~-]+(:[0-9]{1,5})?"
    r"([/?#][^\x00-\x1f\x7f]*)?$"
)
# A date and time starts with its date: pydantic alone would also take "123" as a Unix time, which
# `format: date-time` does not promise.
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")
INT32_MAX = 2**31 - 1
# The numbers are listed, not a range: generators then send exactly these. A priority refuses 5.0,
# unlike the other integers (a float there is taken for a client mistake).
PRIORITY_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "enum": list(range(11))},
        {"type": "string", "enum": list(PRIORITY_WORDS)},
    ],
    "description": "0-10, higher first; or high (8), normal (5), low (2)",
    "default": DEFAULT_PRIORITY,
}
def _priority(value: Any) -> int:
    # bool is an int subclass and floats coerce silently: both are client mistakes, so refuse them.
    if isinstance(value, str):
        if value in PRIORITY_WORDS:
            return PRIORITY_WORDS[value]
        raise ValueError(f"must be an integer 0-10 or one of {', '.join(PRIORITY_WORDS)}")
    if type(value) is not int or not 0 <= value <= 10:
        raise ValueError(f"must be an integer 0-10 or one of {', '.join(PRIORITY_WORDS)}")
    return value


def whole_number(value: Any) -> Any:
    # JSON has one number type: 70.0 is the integer 70 (so says JSON Schema's `integer`). Booleans and
    # numbers in strings are not integers; anything else is left to the int validation to refuse.
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


def _date_time(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and DATE_TIME.match(value)):
        return value
    raise ValueError("must be a date and time, such as 2030-01-01T12:00:00Z")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL")
    return value


def _as_is(value: Any) -> Any:
    return value


# What a payload may hold as the API stores it (jsonb, and orjson for events): any JSON but U+0000 in
# strings and keys (Postgres refuses it) and integers beyond 64 bits (orjson refuses them). job_plan
# checks that on the serialized payload; these types only say it in the OpenAPI document. The integer
# limit is said in words: JSON Schema cannot tell the integer 2**70 (refused) from the float 1.2e21
# (stored), both being the number 1180591620717411303424 to it.
NO_NUL = r"^[^\x00]*$"
JsonKey = Annotated[str, Field(pattern=NO_NUL)]
# A key outside the pattern (holding U+0000) is refused, not just left unchecked.
_CLOSED = Field(json_schema_extra={"additionalProperties": False})
# mypy cannot follow a recursive TypeAliasType (hence Any and the ignores); it serves only the JSON schema.
JsonValue: Any = TypeAliasType(
    "JsonValue",
    Annotated[
        Union[  # noqa: UP007 (a string forward reference cannot be an operand of |)
            bool,
            float,
            Annotated[str, Field(pattern=NO_NUL)],
            list["JsonValue"],  # type: ignore[misc]
            Annotated[dict[JsonKey, "JsonValue"], _CLOSED],  # type: ignore[misc]
            None,
        ],
        Field(description="Any JSON value; an integer must fit in 64 bits, a string may not hold U+0000"),
    ],
)
Payload = Annotated[
    dict[str, Any], BeforeValidator(_as_is, json_schema_input_type=Annotated[dict[JsonKey, JsonValue], _CLOSED])
]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Priority = Annotated[int, BeforeValidator(_priority), WithJsonSchema(PRIORITY_SCHEMA)]
DateTime = Annotated[datetime, BeforeValidator(_date_time)]
# Integers with their bounds (an integral float such as 70.0 is taken as 70).
MaxAttempts = Annotated[int, Field(ge=1, le=100), BeforeValidator(whole_number)]
TimeoutMs = Annotated[int, Field(ge=1, le=INT32_MAX), BeforeValidator(whole_number)]
DelayMs = Annotated[int, Field(ge=0, le=366 * 86_400_000), BeforeValidator(whole_number)]
BaseDelayMs = Annotated[int, Field(ge=0, le=86_400_000), BeforeValidator(whole_number)]
MaxDelayMs = Annotated[int, Field(ge=0, le=7 * 86_400_000), BeforeValidator(whole_number)]
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=PRINTABLE)]
CallbackUrl = Annotated[str, Field(max_length=2048, pattern=HTTP_URL), AfterValidator(_http_url)]
Label = Annotated[str, Field(min_length=1, max_length=128, pattern=PRINTABLE)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255, pattern=PRINTABLE)]
