from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from kassa.core.schemas import Strict
from kassa.subscriptions import limits


def _sane(value: datetime) -> datetime:
    """Clock times billing can compute with (period and time-zone arithmetic near
    datetime's edges overflows): 1970-01-01 up to 2200-01-01."""
    if not limits.in_range(value):
        raise ValueError(
            f"must lie between {limits.EARLIEST.isoformat()} and {limits.LATEST.isoformat()}"
        )
    return value


ClockTime = Annotated[AwareDatetime, AfterValidator(_sane)]


class TestClockIn(Strict):
    name: str | None = Field(default=None, max_length=200)
    frozen_time: ClockTime


class AdvanceIn(Strict):
    frozen_time: ClockTime = Field(
        description="The new time: later than the current one; one advance may run at most"
        " KASSA_MAX_CLOCK_ADVANCE_TRANSITIONS subscription transitions (else 422"
        " clock_advance_too_large: advance in smaller steps)"
    )


class TestClockOut(BaseModel):
    id: str
    object: Literal["test_clock"] = "test_clock"
    name: str | None
    frozen_time: datetime
    status: Literal["ready", "advancing"]
    created_at: datetime
