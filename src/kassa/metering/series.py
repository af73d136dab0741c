"""Busy series and the lock that keeps their rollups exact.

A (customer, meter) series is folded into hourly rollups only once it is busy: once one
read counted more than ``ROLLUP_THRESHOLD`` of its events. Until then its usage is read from
its events (an index range), which costs less than a rollup row for every sparse event.

The org's series lock guards the moment a series turns busy. Everything that writes
rollups or changes which events count (ingestion, voids) holds it shared; turning a series
busy (insert its ``usage_series`` row, backfill its rollups from its events) holds it
exclusive, and only tries: a read that would turn a series busy while events are being
written answers from the events and leaves the series for a later read. So no batch can
miss that its series turned busy while the backfill misses the batch's events.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kassa.metering.models import UsageSeries

ROLLUP_THRESHOLD = 2_000  # events counted by one read of a quiet series: then it turns busy
_LOCK_CLASS = 0x6B617373  # the advisory lock class of series locks ("kass")
_SQL = {
    "shared": "SELECT pg_advisory_xact_lock_shared(:cls, hashtext(:org))",
    "exclusive": "SELECT pg_advisory_xact_lock(:cls, hashtext(:org))",
    "try": "SELECT pg_try_advisory_xact_lock(:cls, hashtext(:org))",
}


def lock(session: Session, org_id: str, mode: Literal["shared", "exclusive", "try"]) -> bool:
    """Take the org's series lock until the transaction ends; ``try`` may return False."""
    got = session.scalar(text(_SQL[mode]), {"cls": _LOCK_CLASS, "org": org_id})
    return mode != "try" or bool(got)


def is_busy(session: Session, org_id: str, customer_id: str, meter_id: str) -> bool:
    return (
        session.scalar(
            select(UsageSeries.meter_id).where(
                UsageSeries.org_id == org_id,
                UsageSeries.customer_id == customer_id,
                UsageSeries.meter_id == meter_id,
            )
        )
        is not None
    )
