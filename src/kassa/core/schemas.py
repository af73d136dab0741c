"""Pydantic building blocks shared by every context's public schemas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from kassa.core.money import MAX_AMOUNT

# Metadata caps (Stripe's): 50 keys, keys of 1-40 characters, values of at most 500
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500

# Integers are bounded by the column that stores them, so no input can overflow one (a 500).
INT4_MAX = 2**31 - 1  # PostgreSQL integer: versions, counts, days, seconds

PositiveInt4 = Annotated[int, Field(ge=1, le=INT4_MAX)]
"""A version number, a count of at least one, stored in an ``integer`` column."""
Amount = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
"""An amount of money in minor units, at most :data:`MAX_AMOUNT`."""
PositiveAmount = Annotated[int, Field(ge=1, le=MAX_AMOUNT)]

_PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]{1,30}(\.[0-9]{1,30})?")


def _exact_decimal(value: Any) -> Decimal:
    """A decimal string ("12.5") or an exact JSON integer (15); never a float (0.1 is not
    exact in binary, so a float is refused with a message saying so), no exponent, NaN or
    infinity, at most 30 digits on either side of the point."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError('must be a decimal string such as "12.5" or an integer')
    if isinstance(value, float):
        raise ValueError('must be a decimal string such as "12.5" or an integer, not a float')
    if isinstance(value, int):
        if abs(value) >= 10**30:
            raise ValueError("must have at most 30 digits")
        return Decimal(value)
    text = value.strip() if isinstance(value, str) else format(value, "f")
    if not _PLAIN_DECIMAL.fullmatch(text):
        raise ValueError(f'{text[:40]!r} is not a decimal number such as "12.5"')
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise ValueError(f"{text[:40]!r} is not a decimal number") from None


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": f"^{_PLAIN_DECIMAL.pattern}$"},
                {"type": "integer"},
            ],
            "description": 'A decimal string ("12.5") or an integer; never a float',
        }
    ),
]
"""Where the API takes an exact decimal: a string or a JSON integer, never a float."""


def _storable_instant(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must have a time zone offset")
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must lie between years 1 and 9999 in UTC") from None
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_storable_instant)]
"""An RFC 3339 instant with an offset that is also an instant in UTC: ``0001-01-01T00:00+06:00``
is in 1 BC in UTC, which PostgreSQL stores but psycopg cannot read back (a 500 on every later
read of the row)."""


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _check_metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
    for key, item in value.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY:
            raise ValueError(f"keys must be 1 to {MAX_METADATA_KEY} characters")
        if len(item) > MAX_METADATA_VALUE:
            raise ValueError(f"value of {key[:40]!r} exceeds {MAX_METADATA_VALUE} characters")
    return value


Metadata = Annotated[
    dict[str, str],
    AfterValidator(_check_metadata),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_METADATA_KEYS,
            "propertyNames": {"minLength": 1, "maxLength": MAX_METADATA_KEY},
            "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
            "description": f"Your key-value pairs: at most {MAX_METADATA_KEYS} keys of 1-"
            f"{MAX_METADATA_KEY} characters, values of at most {MAX_METADATA_VALUE} characters",
        }
    ),
]


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently ignored, and no string may
    carry U+0000 (PostgreSQL text cannot store it; it is never legitimate input)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _has_nul(value):
            raise ValueError("must not contain NUL (U+0000) characters")
        return value


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable snake_case error code")
    instance: str | None = None
    errors: list[dict[str, str]] | None = Field(
        default=None, description="One entry per invalid field: {field, message}"
    )
    model_config = ConfigDict(extra="allow")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of a route's error responses (application/problem+json)."""
    return {
        status: {
            "model": Problem,
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        for status in statuses
    }
