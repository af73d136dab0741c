from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from kassa.core.schemas import Strict

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["event_id", "customer", "event_name", "timestamp"],
    "additionalProperties": False,
    "properties": {
        "event_id": {"type": "string", "minLength": 1, "maxLength": 255},
        "customer": {"type": "string", "minLength": 1, "maxLength": 255,
                     "description": "Customer id or external_id"},
        "event_name": {"type": "string", "minLength": 1, "maxLength": 100},
        "timestamp": {"type": "string", "format": "date-time"},
        "properties": {
            "type": "object", "maxProperties": 50, "propertyNames": {"maxLength": 100},
            "description": "At most 50 properties and 8 192 bytes as JSON; names of at most "
            "100 characters, strings of at most 1 000; every number a finite decimal with "
            "absolute value below 10^15 and at most 12 decimal places",
        },
    },
}  # fmt: skip
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["events"],
    "additionalProperties": False,
    "properties": {"events": {"type": "array", "items": EVENT_SCHEMA, "maxItems": 10_000}},
}


class RejectedEvent(BaseModel):
    index: int = Field(description="Position in the batch (CSV: data row number, from 1)")
    code: str
    message: str


class IngestSummary(BaseModel):
    object: Literal["ingest_result"] = "ingest_result"
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]


class VoidIn(Strict):
    reason: str | None = Field(default=None, max_length=500)


class UsageEventOut(BaseModel):
    id: str
    object: Literal["usage_event"] = "usage_event"
    event_id: str
    customer: str
    event_name: str
    meter: str | None
    timestamp: datetime
    value: Decimal | None
    properties: dict[str, Any]
    received_at: datetime
    late: bool
    voided_at: datetime | None
    void_reason: str | None


class UsageGroup(BaseModel):
    key: str | None
    value: Decimal


class AnomalyOut(BaseModel):
    flagged: bool
    median: Decimal | None = Field(description="Median of the previous periods' usage")
    multiplier: Decimal
    periods: int = Field(description="How many previous periods the median covers")


class UsageOut(BaseModel):
    object: Literal["usage"] = "usage"
    customer: str
    meter: str
    event_name: str
    aggregation: str
    value: Decimal
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    group_by: str | None = None
    groups: list[UsageGroup] | None = None
    anomaly: AnomalyOut | None = Field(
        default=None, description="For the current period, on meters with an anomaly rule"
    )

    model_config = {"populate_by_name": True}
