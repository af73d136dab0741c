"""The usage of many customers over one period, in a few grouped queries: what
``metering.service.value`` computes one customer and meter at a time (hourly rollups for
the whole hours, the raw events for the partial hours at both ends), the same arithmetic
in the same order, for the aggregations the rollups answer: count, sum, max and latest.

(It reads the metering tables; it belongs to the metering context and moves there once
that context's current rework has landed.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from kassa.metering.rules import Point, aggregate, whole_hours

SUPPORTED = frozenset({"count", "sum", "max", "latest"})
_ZERO = Decimal(0)

_ROLLUPS = """
    SELECT customer_id, meter_id, coalesce(sum(count), 0), coalesce(sum(sum), 0), max(max)
    FROM usage_rollups
    WHERE org_id = :org AND customer_id = ANY(:customers) AND meter_id = ANY(:meters)
      AND hour >= :lo AND hour < :hi
    GROUP BY customer_id, meter_id
"""
_EVENTS = """
    SELECT customer_id, meter_id, count(*), coalesce(sum(value), 0), max(value)
    FROM usage_events
    WHERE org_id = :org AND customer_id = ANY(:customers) AND meter_id = ANY(:meters)
      AND voided_at IS NULL AND ts >= :lo AND ts < :hi
    GROUP BY customer_id, meter_id
"""
_ROLLUPS_LATEST = """
    SELECT DISTINCT ON (customer_id, meter_id) customer_id, meter_id, latest_ts, latest_value,
           latest_id
    FROM usage_rollups
    WHERE org_id = :org AND customer_id = ANY(:customers) AND meter_id = ANY(:meters)
      AND hour >= :lo AND hour < :hi
    ORDER BY customer_id, meter_id, latest_ts DESC, latest_id DESC
"""
_EVENTS_LATEST = """
    SELECT DISTINCT ON (customer_id, meter_id) customer_id, meter_id, ts, value, id
    FROM usage_events
    WHERE org_id = :org AND customer_id = ANY(:customers) AND meter_id = ANY(:meters)
      AND voided_at IS NULL AND ts >= :lo AND ts < :hi
    ORDER BY customer_id, meter_id, ts DESC, id DESC
"""

Key = tuple[str, str]  # (customer, meter)


def values(
    session: Session, org_id: str, customers: Sequence[str], meters: Sequence[tuple[str, str]],
    start: datetime, end: datetime,
) -> dict[Key, Decimal]:  # fmt: skip
    """(customer, meter) → the meter's exact value over [start, end) for every customer and
    (meter id, aggregation) given; aggregations in ``SUPPORTED`` only."""
    out: dict[Key, Decimal] = {}
    if end <= start or not customers:
        return {(c, m): _ZERO for c in customers for m, _ in meters}
    span = whole_hours(start, end) or (start, start)  # no whole hour: everything is "edge"
    edges = [(a, b) for a, b in ((start, span[0]), (span[1], end)) if a < b]
    totals = [m for m, agg in meters if agg != "latest"]
    latest = [m for m, agg in meters if agg == "latest"]
    aggregation = dict(meters)

    def run(sql: str, ids: list[str], lo: datetime, hi: datetime) -> dict[Key, Any]:
        stmt = text(sql).bindparams(
            bindparam("customers", type_=ARRAY(String)), bindparam("meters", type_=ARRAY(String))
        )
        params = {"org": org_id, "customers": list(customers), "meters": ids, "lo": lo, "hi": hi}
        return {(r[0], r[1]): r[2:] for r in session.execute(stmt, params)}

    if totals:
        in_rollups = run(_ROLLUPS, totals, *span)
        in_edges = [run(_EVENTS, totals, a, b) for a, b in edges]
        for c in customers:
            for m in totals:
                count, total, highest = in_rollups.get((c, m), (0, _ZERO, None))
                found = [highest]
                for edge in in_edges:
                    e_count, e_total, e_highest = edge.get((c, m), (0, 0, None))
                    count, total = count + e_count, Decimal(total) + Decimal(e_total or 0)
                    found.append(e_highest)
                if aggregation[m] == "count":
                    out[(c, m)] = Decimal(count)
                elif aggregation[m] == "sum":
                    out[(c, m)] = Decimal(total)
                else:
                    present = [v for v in found if v is not None]
                    out[(c, m)] = max(present) if present else _ZERO
    if latest:
        parts = [run(_ROLLUPS_LATEST, latest, *span)]
        parts += [run(_EVENTS_LATEST, latest, a, b) for a, b in edges]
        for c in customers:
            for m in latest:
                candidates = [
                    Point(r[0], r[1], None, r[2]) for part in parts if (r := part.get((c, m)))
                ]
                out[(c, m)] = aggregate("latest", candidates, start, end)
    return out
