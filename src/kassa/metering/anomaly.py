"""Anomaly flags: a customer's usage in the current period above the meter's multiple of
their trailing median (the previous periods of the same subscription)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kassa.catalog.models import Meter
from kassa.core.clock import Clock
from kassa.events import service as events
from kassa.metering import late
from kassa.metering.models import UsageAnomaly
from kassa.subscriptions.models import Subscription

TRAILING_PERIODS = 6


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    value: Decimal
    median: Decimal | None
    multiplier: Decimal
    periods: int  # how many previous periods the median is over


def assess(session: Session, sub: Subscription, meter: Meter) -> Verdict | None:
    """None when the meter has no anomaly rule."""
    from kassa.metering import service as metering

    if meter.anomaly_multiplier is None:
        return None
    start, end = sub.current_period_start, sub.current_period_end
    current = metering.value(session, sub.org_id, sub.customer_id, meter, start, end)
    history: list[Decimal] = []
    cursor = start
    while len(history) < TRAILING_PERIODS and cursor > sub.start_at:
        p_start, p_end = late.period_containing(session, sub, cursor - timedelta(microseconds=1))
        history.append(metering.value(session, sub.org_id, sub.customer_id, meter, p_start, p_end))
        cursor = p_start
    multiplier = Decimal(meter.anomaly_multiplier)
    if len(history) < meter.anomaly_min_periods:
        return Verdict(False, current, None, multiplier, len(history))
    median = Decimal(statistics.median(history))
    flagged = median > 0 and current > multiplier * median
    return Verdict(flagged, current, median, multiplier, len(history))


def record(
    session: Session, sub: Subscription, meter: Meter, verdict: Verdict, clock: Clock,
    now: datetime,
) -> bool:  # fmt: skip
    """Remember a flagged period once and announce it (``usage.anomaly_detected``)."""
    if not verdict.flagged or verdict.median is None:
        return False
    stmt = (
        insert(UsageAnomaly)
        .values(
            org_id=sub.org_id, customer_id=sub.customer_id, meter_id=meter.id,
            period_start=sub.current_period_start, value=verdict.value, median=verdict.median,
            detected_at=now,
        )
        .on_conflict_do_nothing()
        .returning(UsageAnomaly.meter_id)
    )  # fmt: skip
    if session.execute(stmt).first() is None:
        return False
    events.record(
        session, clock, sub.org_id, "usage.anomaly_detected",
        {"id": sub.id, "customer": sub.customer_id, "meter": meter.id,
         "period_start": sub.current_period_start.isoformat(), "value": str(verdict.value),
         "median": str(verdict.median), "multiplier": str(verdict.multiplier)},
        now,
    )  # fmt: skip
    return True
