from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from kassa.core.schemas import Strict


class TestClockIn(Strict):
    name: str | None = Field(default=None, max_length=200)
    frozen_time: AwareDatetime


class AdvanceIn(Strict):
    frozen_time: AwareDatetime


class TestClockOut(BaseModel):
    id: str
    object: Literal["test_clock"] = "test_clock"
    name: str | None
    frozen_time: datetime
    status: Literal["ready", "advancing"]
    created_at: datetime
