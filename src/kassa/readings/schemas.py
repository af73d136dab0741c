"""Public contract of meter points and meter readings (see docs/readings.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema, field_validator

from kassa.core.ids import looks_like_id
from kassa.core.schemas import Strict
from kassa.metering.rules import MAX_VALUE_EXCLUSIVE, VALUE_BOUNDS, bounded, parse_timestamp
from kassa.readings.rules import MAX_DIGITS

Quality = Literal["actual", "estimated", "manual"]
Source = Literal["api", "csv", "manual"]
SpreadInterval = Literal["hour", "day"]
SPREAD_SECONDS: dict[str, int] = {"hour": 3600, "day": 86_400}
MAX_REGISTER_DECIMALS = 6
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_INT_BOUND = int(MAX_VALUE_EXCLUSIVE)

_DECIMAL = re.compile(r"^[+-]?[0-9]{1,40}(\.[0-9]{1,12})?$")
_DECIMAL_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": _DECIMAL.pattern},
        {"type": "integer"},
    ]
}


def parse_reading_value(value: object) -> Decimal:
    """A decimal string ("12345.6") or a JSON integer; floats are refused (they are not
    exact), and so are exponents, NaN and infinities."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("must be a decimal string or an integer, never a float")
    if isinstance(value, int):
        if not -_INT_BOUND < value < _INT_BOUND:
            raise ValueError(f"must be {VALUE_BOUNDS}")
        return Decimal(value)
    if isinstance(value, Decimal):
        text = format(value, "f") if value.is_finite() else "nan"
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError("must be a decimal string or an integer")
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f'{text[:50]!r} is not a decimal number such as "12345.6"')
    try:
        number = bounded(Decimal(text))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise ValueError(f"{text[:50]!r} is not a decimal number") from None
    if number is None:
        raise ValueError(f"must be {VALUE_BOUNDS}")
    return number


def parse_read_at(value: object) -> datetime:
    """RFC 3339 with an offset (as usage event timestamps are), from 1970 on."""
    parsed = value if isinstance(value, datetime) else parse_timestamp(value)
    if parsed is None or parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-03-01T00:00:00Z")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if utc < EARLIEST:
        raise ValueError(f"must not be before {EARLIEST.isoformat()}")
    return parsed


ReadingValue = Annotated[
    Decimal, BeforeValidator(parse_reading_value), WithJsonSchema(_DECIMAL_SCHEMA)
]
ReadAt = Annotated[
    datetime,
    BeforeValidator(parse_read_at),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class MeterPointIn(Strict):
    code: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$",
        description="Unique in the organization, e.g. the meter's serial number or the flat",
    )
    meter: str = Field(
        min_length=1, max_length=100, description="A `sum` meter, by id or event_name"
    )
    customer: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Default customer of its readings (id or external_id)",
    )
    register_digits: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DIGITS,
        description="Integer digits of the register (it wraps to 0 after 10^digits - 1); "
        "null: never wraps",
    )
    register_decimals: int = Field(default=0, ge=0, le=MAX_REGISTER_DECIMALS)
    spread_interval: SpreadInterval | None = Field(
        default=None,
        description="Spread each consumption over UTC hours or days; null: one event per "
        "pair of readings",
    )
    unit: str | None = Field(default=None, min_length=1, max_length=20)

    @field_validator("code")
    @classmethod
    def _not_an_id(cls, value: str) -> str:
        if looks_like_id(value, "mp"):
            raise ValueError("must not look like a meter point id (mp_…)")
        return value


class MeterPoint(BaseModel):
    id: str
    object: Literal["meter_point"] = "meter_point"
    code: str
    meter: str = Field(description="The usage meter's id")
    event_name: str = Field(description="The usage meter's event_name")
    customer: str | None
    register_digits: int | None
    register_decimals: int
    spread_interval: SpreadInterval | None
    unit: str | None
    created_at: datetime


class MeterReadingIn(Strict):
    meter_point: str = Field(min_length=1, max_length=100, description="Id or code")
    customer: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Id or external_id; default: the meter point's customer",
    )
    reading: ReadingValue = Field(description="The register as shown: decimal string or integer")
    read_at: ReadAt
    quality: Quality = "actual"
    rollover: bool = Field(default=False, description="The register wrapped past 0 (once)")
    replacement: bool = Field(
        default=False, description="First reading of a new meter, counting from start_value"
    )
    start_value: ReadingValue | None = Field(
        default=None, description="The new meter's register when installed (replacement only)"
    )


class ReadingEvents(BaseModel):
    """What recording the reading did to the derived usage events of its meter point."""

    accepted: int = Field(description="Derived usage events newly recorded")
    duplicates: int = Field(description="Planned derived events that were already recorded")
    voided: int = Field(description="Derived events voided: superseded by this reading")


class MeterReading(BaseModel):
    id: str
    object: Literal["meter_reading"] = "meter_reading"
    meter_point: str = Field(description="The meter point's id")
    customer: str
    read_at: datetime
    reading: str = Field(description="Decimal string, as recorded")
    quality: Quality
    rollover: bool
    replacement: bool
    start_value: str
    source: Source
    created_by: str | None = Field(description="The member who recorded it (null: an API key)")
    created_at: datetime


class MeterReadingCreated(MeterReading):
    events: ReadingEvents


class RejectedRow(BaseModel):
    index: int = Field(description="Data row number, from 1")
    code: str
    message: str


class ReadingImportSummary(BaseModel):
    object: Literal["reading_import_result"] = "reading_import_result"
    accepted: int = Field(description="Rows stored as new readings")
    duplicates: int = Field(description="Rows identical to a stored reading (nothing changed)")
    rejected: list[RejectedRow]
    events: ReadingEvents = Field(description="Totals over the accepted rows")
