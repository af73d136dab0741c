"""Metering use cases: usage values (rollups for whole hours, events for the edges),
voiding an event, rebuilding rollups, and the usage that subscriptions are rated with."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kassa.catalog.models import Meter, Plan, PlanVersion
from kassa.core import jsoncodec
from kassa.core.clock import Clock
from kassa.core.errors import Conflict, NotFound
from kassa.events import service as events
from kassa.metering import late, series
from kassa.metering.models import UsageEvent, UsageRollup, UsageSeries, UsageUniqueValue
from kassa.metering.rules import Aggregation, Point, aggregate, hour_floor, whole_hours
from kassa.pricing import Usage
from kassa.subscriptions.models import Subscription

_ZERO = Decimal(0)


class EventNotFound(NotFound):
    code = "event_not_found"
    title = "No such usage event"


class EventAlreadyVoided(Conflict):
    code = "event_voided"
    title = "The event is already voided"


def _counted(org_id: str, customer_id: str, meter_id: str) -> list[ColumnElement[bool]]:
    return [
        UsageEvent.org_id == org_id,
        UsageEvent.customer_id == customer_id,
        UsageEvent.meter_id == meter_id,
        UsageEvent.voided_at.is_(None),
    ]


def _points(
    session: Session, org_id: str, customer_id: str, meter_id: str, start: datetime, end: datetime
) -> list[Point]:
    rows = session.execute(
        select(UsageEvent.ts, UsageEvent.value, UsageEvent.unique_value, UsageEvent.id).where(
            *_counted(org_id, customer_id, meter_id),
            UsageEvent.ts >= start,
            UsageEvent.ts < end,
        )
    ).all()
    return [Point(ts, value, unique, eid) for ts, value, unique, eid in rows]


def _before(
    session: Session, org_id: str, customer_id: str, meter_id: str, start: datetime
) -> Point | None:
    row = session.execute(
        select(UsageEvent.ts, UsageEvent.value, UsageEvent.unique_value, UsageEvent.id)
        .where(*_counted(org_id, customer_id, meter_id), UsageEvent.ts < start)
        .order_by(UsageEvent.ts.desc(), UsageEvent.id.desc())
        .limit(1)
    ).first()
    return Point(row[0], row[1], row[2], row[3]) if row else None


def value(
    session: Session, org_id: str, customer_id: str, meter: Meter, start: datetime, end: datetime
) -> Decimal:
    """The meter's exact value over [start, end) for one customer."""
    agg: Aggregation = meter.aggregation  # type: ignore[assignment]
    if end <= start:
        return _ZERO
    if agg == "time_weighted_avg":
        # gauges change rarely: their events in range plus the value in force at the start
        points = _points(session, org_id, customer_id, meter.id, start, end)
        before = _before(session, org_id, customer_id, meter.id, start)
        return aggregate(agg, points, start, end, before)
    if agg == "latest":
        # the last counted event in range: one backward index probe, busy series or not
        row = session.execute(
            select(UsageEvent.value)
            .where(*_counted(org_id, customer_id, meter.id), UsageEvent.ts >= start,
                   UsageEvent.ts < end)
            .order_by(UsageEvent.ts.desc(), UsageEvent.id.desc())
            .limit(1)
        ).first()  # fmt: skip
        return (row[0] or _ZERO) if row is not None else _ZERO
    if agg == "unique_count":
        if series.is_busy(session, org_id, customer_id, meter.id):
            return _distinct_from_rollups(session, org_id, customer_id, meter.id, start, end)
        found, seen = _distinct_from_events(session, org_id, customer_id, meter.id, start, end)
    else:  # count, sum, max: one statement, busy series or not
        busy, found, seen = _totals(session, org_id, customer_id, meter.id, agg, start, end)
        if busy:
            return found
    if seen > series.ROLLUP_THRESHOLD:
        roll_up(session, org_id, customer_id, meter.id)
    return found


def _distinct_from_rollups(
    session: Session, org_id: str, customer_id: str, meter_id: str, start: datetime, end: datetime
) -> Decimal:
    """A busy series' distinct count: the hours' distinct values plus the partial hours'."""
    span = whole_hours(start, end) or (start, start)  # no whole hour: everything is "edge"
    distinct = set(
        session.scalars(
            select(UsageUniqueValue.value)
            .where(
                UsageUniqueValue.org_id == org_id,
                UsageUniqueValue.customer_id == customer_id,
                UsageUniqueValue.meter_id == meter_id,
                UsageUniqueValue.hour >= span[0],
                UsageUniqueValue.hour < span[1],
            )
            .distinct()
        )
    )
    for a, b in ((start, span[0]), (span[1], end)):
        if a < b:
            distinct.update(
                session.scalars(
                    select(UsageEvent.unique_value)
                    .where(
                        *_counted(org_id, customer_id, meter_id), UsageEvent.ts >= a,
                        UsageEvent.ts < b, UsageEvent.unique_value.is_not(None),
                    )
                    .distinct()
                )
            )  # fmt: skip
    return Decimal(len(distinct))


def _distinct_from_events(
    session: Session, org_id: str, customer_id: str, meter_id: str, start: datetime, end: datetime
) -> tuple[Decimal, int]:
    """A quiet series' distinct count straight from its events, and how many it counted."""
    count, distinct = session.execute(
        select(func.count(), func.count(UsageEvent.unique_value.distinct())).where(
            *_counted(org_id, customer_id, meter_id), UsageEvent.ts >= start,
            UsageEvent.ts < end,
        )
    ).one()  # fmt: skip
    return Decimal(distinct), int(count)


_TOTALS = text(
    """
    WITH busy AS (
        SELECT EXISTS (SELECT 1 FROM usage_series
                       WHERE org_id = :org AND customer_id = :customer AND meter_id = :meter)
               AS yes
    ), parts AS (
        SELECT count(*) AS n, coalesce(sum(value), 0) AS total, max(value) AS top
        FROM usage_events
        WHERE NOT (SELECT yes FROM busy) AND org_id = :org AND customer_id = :customer
          AND meter_id = :meter AND voided_at IS NULL AND ts >= :start AND ts < :end
        UNION ALL
        SELECT coalesce(sum(count), 0), coalesce(sum(sum), 0), max(max)
        FROM usage_rollups
        WHERE (SELECT yes FROM busy) AND org_id = :org AND customer_id = :customer
          AND meter_id = :meter AND hour >= :lo AND hour < :hi
        UNION ALL
        SELECT count(*), coalesce(sum(value), 0), max(value)
        FROM usage_events
        WHERE (SELECT yes FROM busy) AND org_id = :org AND customer_id = :customer
          AND meter_id = :meter AND voided_at IS NULL AND ts >= :start AND ts < :lo
        UNION ALL
        SELECT count(*), coalesce(sum(value), 0), max(value)
        FROM usage_events
        WHERE (SELECT yes FROM busy) AND org_id = :org AND customer_id = :customer
          AND meter_id = :meter AND voided_at IS NULL AND ts >= :hi AND ts < :end
    )
    SELECT (SELECT yes FROM busy), sum(n), sum(total), max(top) FROM parts
    """
)


def _totals(
    session: Session, org_id: str, customer_id: str, meter_id: str, agg: Aggregation,
    start: datetime, end: datetime,
) -> tuple[bool, Decimal, int]:  # fmt: skip
    """count, sum or max over [start, end) in one statement: a quiet series from its events,
    a busy one from its rollups for the whole hours plus its events for the partial hours at
    both ends. Returns (busy, value, events counted from events)."""
    lo, hi = whole_hours(start, end) or (start, start)  # no whole hour: all of it is edge
    busy, count, total, highest = session.execute(
        _TOTALS,
        {"org": org_id, "customer": customer_id, "meter": meter_id, "start": start,
         "end": end, "lo": lo, "hi": hi},
    ).one()  # fmt: skip
    found = {
        "count": Decimal(count or 0),
        "sum": Decimal(total or 0),
        "max": highest if highest is not None else _ZERO,
    }[agg]
    return bool(busy), found, int(count or 0)


def roll_up(session: Session, org_id: str, customer_id: str, meter_id: str) -> bool:
    """Turn a quiet series busy: record it and backfill its rollups from its events. Only
    when the org's series lock is free at once (see ``metering.series``); False if not
    (the series stays quiet, reads stay exact) or if it was busy already."""
    if not series.lock(session, org_id, "try"):
        return False
    added = session.execute(
        insert(UsageSeries)
        .values(org_id=org_id, customer_id=customer_id, meter_id=meter_id, rolled_up_at=func.now())
        .on_conflict_do_nothing()
        .returning(UsageSeries.meter_id)
    ).first()
    if added is None:
        return False
    one = {"org": org_id, "customer": customer_id, "meter": meter_id}
    only = " AND customer_id = :customer AND meter_id = :meter"
    session.execute(text(_REFOLD_SQL + only + _REFOLD_GROUP), one)
    session.execute(text(_REUNIQUE_SQL + only), one)
    return True


def grouped_value(
    session: Session, org_id: str, customer_id: str, meter: Meter, start: datetime,
    end: datetime, group_by: str | None, filters: Mapping[str, str],
) -> list[tuple[str | None, Decimal]]:  # fmt: skip
    """Ad-hoc filters and group-by read the events of the range (documented: not rollups)."""
    stmt = select(
        UsageEvent.ts, UsageEvent.value, UsageEvent.unique_value, UsageEvent.id,
        UsageEvent.properties,
    ).where(
        *_counted(org_id, customer_id, meter.id),
        UsageEvent.ts >= start, UsageEvent.ts < end,
    )  # fmt: skip
    for name, wanted in filters.items():
        stmt = stmt.where(UsageEvent.properties[name].astext == wanted)
    groups: dict[str | None, list[Point]] = {}
    for ts, val, unique, eid, props in session.execute(stmt):
        key = None if group_by is None else _as_text(props.get(group_by))
        groups.setdefault(key, []).append(Point(ts, val, unique, eid))
    before = None
    if meter.aggregation == "time_weighted_avg":
        before = _before(session, org_id, customer_id, meter.id, start)
    agg: Aggregation = meter.aggregation  # type: ignore[assignment]
    return sorted(
        ((key, aggregate(agg, pts, start, end, before)) for key, pts in groups.items()),
        key=lambda kv: (kv[0] is None, kv[0] or ""),
    )


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def event_values(
    session: Session, org_id: str, customer_id: str, meter_id: str, start: datetime, end: datetime
) -> tuple[Decimal, ...]:
    """Each counted event's value, in time order (per-event percentage pricing)."""
    rows = session.scalars(
        select(UsageEvent.value)
        .where(
            *_counted(org_id, customer_id, meter_id),
            UsageEvent.ts >= start,
            UsageEvent.ts < end,
        )
        .order_by(UsageEvent.ts, UsageEvent.id)
    ).all()
    return tuple(v or _ZERO for v in rows)


def usage_for_period(
    session: Session, org_id: str, customer_id: str, plan: Plan, version: PlanVersion,
    start: datetime, end: datetime,
) -> dict[str, Usage]:  # fmt: skip
    """What each charge of the plan version is rated on, for one customer and period: the
    meters ``period_values`` answers in a few statements together, the others one by one."""
    from kassa.pricing import parse_charge

    meters = {
        m.id: m
        for m in session.scalars(
            select(Meter).where(
                Meter.org_id == org_id, Meter.id.in_([c["meter"] for c in version.charges])
            )
        )
    }
    usage: dict[str, Usage] = {}
    together: list[tuple[str, str]] = []
    for stored in version.charges:
        meter = meters[stored["meter"]]
        charge = parse_charge(meter.id, stored["model"], stored["properties"], None)
        if getattr(charge.properties, "per_event", False):
            values = event_values(session, org_id, customer_id, meter.id, start, end)
            usage[meter.id] = Usage(sum(values, _ZERO), values)
        elif meter.aggregation in BULK_AGGREGATIONS:
            together.append((meter.id, meter.aggregation))
        else:
            usage[meter.id] = Usage(value(session, org_id, customer_id, meter, start, end))
    if together:
        found = period_values(session, org_id, [customer_id], together, start, end)
        for meter_id, _ in together:
            usage[meter_id] = Usage(found[(customer_id, meter_id)])
    return usage


def _refold_hour(
    session: Session, org_id: str, customer_id: str, meter_id: str, hour: datetime
) -> None:
    """Recompute one rollup bucket (and its distinct values) from its events (busy series
    only: a quiet one has no rollups)."""
    if not series.is_busy(session, org_id, customer_id, meter_id):
        return
    session.execute(
        delete(UsageRollup).where(
            UsageRollup.org_id == org_id, UsageRollup.customer_id == customer_id,
            UsageRollup.meter_id == meter_id, UsageRollup.hour == hour,
        )
    )  # fmt: skip
    session.execute(
        delete(UsageUniqueValue).where(
            UsageUniqueValue.org_id == org_id, UsageUniqueValue.customer_id == customer_id,
            UsageUniqueValue.meter_id == meter_id, UsageUniqueValue.hour == hour,
        )
    )  # fmt: skip
    session.execute(
        text(_REFOLD_SQL + " AND customer_id = :customer AND meter_id = :meter"
             " AND ts >= :hour AND ts < :hour + interval '1 hour'" + _REFOLD_GROUP),
        {"org": org_id, "customer": customer_id, "meter": meter_id, "hour": hour},
    )  # fmt: skip
    session.execute(
        text(_REUNIQUE_SQL + " AND customer_id = :customer AND meter_id = :meter"
             " AND ts >= :hour AND ts < :hour + interval '1 hour'"),
        {"org": org_id, "customer": customer_id, "meter": meter_id, "hour": hour},
    )  # fmt: skip


_HOUR = "date_trunc('hour', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
_REFOLD_SQL = f"""
    INSERT INTO usage_rollups (org_id, customer_id, meter_id, hour, count, sum, max, latest_ts,
                               latest_id, latest_value)
    SELECT org_id, customer_id, meter_id, {_HOUR}, count(*), coalesce(sum(value), 0), max(value),
           (array_agg(ts ORDER BY ts DESC, id DESC))[1],
           (array_agg(id ORDER BY ts DESC, id DESC))[1],
           (array_agg(value ORDER BY ts DESC, id DESC))[1]
    FROM usage_events
    WHERE org_id = :org AND meter_id IS NOT NULL AND voided_at IS NULL"""  # noqa: S608
_REFOLD_GROUP = " GROUP BY 1, 2, 3, 4"
_REUNIQUE_SQL = f"""
    INSERT INTO usage_unique_values (org_id, customer_id, meter_id, hour, value)
    SELECT DISTINCT org_id, customer_id, meter_id, {_HOUR}, unique_value
    FROM usage_events
    WHERE org_id = :org AND meter_id IS NOT NULL AND voided_at IS NULL
      AND unique_value IS NOT NULL"""  # noqa: S608


def void(
    session: Session, org_id: str, event_id: str, reason: str | None, clock: Clock
) -> UsageEvent:
    """Remove an event's effect (audited: the event stays, marked voided)."""
    event = session.scalars(
        select(UsageEvent)
        .where(UsageEvent.org_id == org_id, UsageEvent.event_id == event_id)
        .with_for_update()
    ).one_or_none()
    if event is None:
        raise EventNotFound(detail=f"No usage event {event_id!r} in this organization.")
    if event.voided_at is not None:
        raise EventAlreadyVoided()
    series.lock(session, org_id, "shared")  # what counts changes: not while a series turns busy
    correction = _closed_period_of(session, org_id, event, clock)
    event.voided_at = clock.now()
    event.void_reason = reason
    session.flush()
    if event.meter_id is not None:
        _refold_hour(session, org_id, event.customer_id, event.meter_id, hour_floor(event.ts))
    if correction is not None:
        sub, period, before = correction
        after = late.charge_amount(session, sub, event.meter_id or "", *period)
        late.record_delta(
            session, sub, event.meter_id or "", period, before, after, [event.event_id],
            "Voided usage", clock,
        )  # fmt: skip
    events.record(
        session, clock, org_id, "usage_event.voided",
        {"id": event.id, "event_id": event.event_id, "customer": event.customer_id,
         "reason": reason},
    )  # fmt: skip
    return event


def _closed_period_of(
    session: Session, org_id: str, event: UsageEvent, clock: Clock
) -> tuple[Subscription, tuple[datetime, datetime], int] | None:
    """If the event counts in a period already closed: its subscription, the period and
    what the period's charges on the meter come to now (before the void)."""
    if event.meter_id is None:
        return None
    window = late.windows(session, org_id, [event.customer_id], clock.now()).get(
        (event.customer_id, event.meter_id)
    )
    if window is None or event.ts >= window.open_from or event.ts < window.subscription.start_at:
        return None
    period = late.period_containing(session, window.subscription, event.ts)
    before = late.charge_amount(session, window.subscription, event.meter_id, *period)
    return window.subscription, period, before


def rebuild(session: Session, org_id: str) -> int:
    """Recompute every rollup of one org (its busy series) from its events; returns the
    bucket count. Holds the org's series lock exclusively: ingestion waits meanwhile."""
    series.lock(session, org_id, "exclusive")
    session.execute(delete(UsageRollup).where(UsageRollup.org_id == org_id))
    session.execute(delete(UsageUniqueValue).where(UsageUniqueValue.org_id == org_id))
    busy = (
        " AND (customer_id, meter_id) IN"
        " (SELECT customer_id, meter_id FROM usage_series WHERE org_id = :org)"
    )
    session.execute(text(_REFOLD_SQL + busy + _REFOLD_GROUP), {"org": org_id})
    session.execute(text(_REUNIQUE_SQL + busy), {"org": org_id})
    return int(
        session.scalar(
            select(func.count()).select_from(UsageRollup).where(UsageRollup.org_id == org_id)
        )
        or 0
    )


def list_events(
    session: Session, org_id: str, customer_id: str | None, meter_id: str | None,
    limit: int, cursor: str | None,
) -> tuple[Sequence[UsageEvent], bool, str | None]:  # fmt: skip
    from kassa.core.pagination import paginate

    stmt = select(UsageEvent).where(UsageEvent.org_id == org_id)
    if customer_id is not None:
        stmt = stmt.where(UsageEvent.customer_id == customer_id)
    if meter_id is not None:
        stmt = stmt.where(UsageEvent.meter_id == meter_id)
    return paginate(session, stmt, UsageEvent.id, limit, cursor)


# --- many customers at once (billing runs) --------------------------------------------

BULK_AGGREGATIONS = frozenset({"count", "sum", "max", "latest"})
Key = tuple[str, str]  # (customer, meter)

# The customers and meters travel as JSON arrays (one parameter each, encoded by msgspec in
# C: psycopg dumps a list into an array item by item) and are compared as ``= ANY(ARRAY(…))``,
# an index condition (see ``db.bulk.among``).
_BUSY = """
    SELECT customer_id, meter_id FROM usage_series
    WHERE org_id = :org
      AND customer_id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:customers AS jsonb))))
      AND meter_id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:meters AS jsonb))))
"""
_ROLLUPS = """
    SELECT customer_id, meter_id, coalesce(sum(count), 0), coalesce(sum(sum), 0), max(max)
    FROM usage_rollups
    WHERE org_id = :org
      AND customer_id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:customers AS jsonb))))
      AND meter_id = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:meters AS jsonb))))
      AND hour >= :lo AND hour < :hi
    GROUP BY customer_id, meter_id
"""
# Events per (customer, meter) pair given: one probe each (a grouped form over customers and
# meters would probe their cross product, and a chunk's customers are on different plans).
# The pairs are unpacked behind OFFSET 0, so that the probe compares columns with plain
# values: ``customer_id = p->>0`` would apply a function that is not leakproof to the row,
# and under row-level security such a condition waits until the policy has passed each row
# (every event of the organization, for each pair).
_EVENTS = """
    SELECT k.c, k.m, a.n, a.total, a.top
    FROM (SELECT p->>0 AS c, p->>1 AS m FROM jsonb_array_elements(CAST(:pairs AS jsonb)) p
          OFFSET 0) k
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, coalesce(sum(value), 0) AS total, max(value) AS top
        FROM usage_events
        WHERE org_id = :org AND customer_id = k.c AND meter_id = k.m
          AND voided_at IS NULL AND ts >= :lo AND ts < :hi
    ) a
    WHERE a.n > 0
"""
_LATEST = """
    SELECT c.id, m.id, e.value
    FROM jsonb_array_elements_text(CAST(:customers AS jsonb)) AS c(id)
    CROSS JOIN jsonb_array_elements_text(CAST(:meters AS jsonb)) AS m(id)
    CROSS JOIN LATERAL (
        SELECT value FROM usage_events
        WHERE org_id = :org AND customer_id = c.id AND meter_id = m.id AND voided_at IS NULL
          AND ts >= :lo AND ts < :hi
        ORDER BY ts DESC, id DESC LIMIT 1
    ) e
"""


def period_values(
    session: Session, org_id: str, customers: Sequence[str], meters: Sequence[tuple[str, str]],
    start: datetime, end: datetime, wanted: Collection[Key] | None = None,
) -> dict[Key, Decimal]:  # fmt: skip
    """(customer, meter) → exactly what ``value`` answers over [start, end), for every
    customer and (meter id, aggregation) pair at once, in a few queries: quiet series from
    their events, busy ones from their rollups plus the partial hours at the ends.
    Aggregations in ``BULK_AGGREGATIONS`` only. (It never turns a series busy.) ``wanted``:
    the pairs the caller will read, if not all of them (the others answer 0 without a look
    at their events)."""
    customers = list(customers)
    out = {(c, m): _ZERO for c in customers for m, _ in meters}
    if end <= start or not customers or not meters:
        return out
    aggregation = dict(meters)

    def run(sql: str, who: list[str], ids: list[str], lo: datetime, hi: datetime) -> Any:
        params = {
            "org": org_id, "customers": jsoncodec.encode(who), "meters": jsoncodec.encode(ids),
            "lo": lo, "hi": hi,
        }  # fmt: skip
        return session.execute(text(sql), params).all()

    def settle(key: Key, count: int, total: Decimal, values: list[Decimal | None]) -> None:
        agg = aggregation[key[1]]
        if agg == "count":
            out[key] = Decimal(count)
        elif agg == "sum":
            out[key] = Decimal(total)
        else:
            present = [v for v in values if v is not None]
            out[key] = max(present) if present else _ZERO

    latest = [m for m, agg in meters if agg == "latest"]
    if latest:
        for c, m, found in run(_LATEST, customers, latest, start, end):
            out[(c, m)] = found if found is not None else _ZERO
    totals = [m for m, agg in meters if agg != "latest"]
    if not totals:
        return out
    wanted = set(out) if wanted is None else set(wanted) & set(out)

    def events_of(pairs: set[Key], lo: datetime, hi: datetime) -> Any:
        params = {"org": org_id, "pairs": jsoncodec.encode(sorted(pairs)), "lo": lo, "hi": hi}
        return session.execute(text(_EVENTS), params).all() if pairs else []

    busy: set[Key] = {(c, m) for c, m in run(_BUSY, customers, totals, start, end)} & wanted
    summed = set(totals)
    quiet = {k for k in wanted if k[1] in summed and k not in busy}
    for c, m, count, total, highest in events_of(quiet, start, end):  # from their events
        settle((c, m), count, Decimal(total), [highest])
    if not busy:
        return out
    span = whole_hours(start, end) or (start, start)  # no whole hour: everything is "edge"
    edges = [(a, b) for a, b in ((start, span[0]), (span[1], end)) if a < b]
    who = sorted({c for c, _ in busy})
    ids = sorted({m for _, m in busy})
    in_rollups = {(r[0], r[1]): r[2:] for r in run(_ROLLUPS, who, ids, *span)}
    in_edges = [{(r[0], r[1]): r[2:] for r in events_of(busy, a, b)} for a, b in edges]
    for key in busy:
        count, total, highest = in_rollups.get(key, (0, _ZERO, None))
        values = [highest]
        for edge in in_edges:
            e_count, e_total, e_highest = edge.get(key, (0, 0, None))
            count, total = count + e_count, Decimal(total) + Decimal(e_total or 0)
            values.append(e_highest)
        settle(key, count, total, values)
    return out
