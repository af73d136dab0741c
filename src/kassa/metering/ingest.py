"""Ingestion at database speed: validate in one pass, COPY into a temporary table, then one
statement inserts the new events (duplicates skipped by the unique key) and folds exactly
those of busy series into the hourly rollups. Runs in the caller's transaction: when the
response says accepted, the events and their rollups were committed together.

Which series are busy (``metering.series``) is read under the org's shared series lock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kassa.catalog.models import Meter
from kassa.core import jsoncodec
from kassa.core.clock import Clock, FrozenClock
from kassa.core.ids import looks_like_id, new_ids
from kassa.customers.models import Customer
from kassa.db import bulk
from kassa.metering import anomaly, late, series
from kassa.metering.models import UsageEvent
from kassa.metering.rules import (
    MAX_BATCH,
    MAX_PROPERTIES_BYTES,
    MeterSpec,
    ParsedEvent,
    Rejection,
    parse_event,
)
from kassa.orgs.models import Organization

__all__ = ["MAX_BATCH", "IngestResult", "ingest", "meter_specs"]

_TEMP = text(
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS usage_incoming (
        id text, event_id text, customer_id text, meter_id text, event_name text,
        ts timestamptz, value numeric, unique_value text, properties jsonb, late boolean
    ) ON COMMIT DELETE ROWS
    """
)

_FOLD = text(
    """
    WITH inserted AS (
        INSERT INTO usage_events (org_id, id, event_id, customer_id, meter_id, event_name, ts,
                                  value, unique_value, properties, received_at, late)
        SELECT :org, id, event_id, customer_id, meter_id, event_name, ts, value, unique_value,
               properties, :now, late
        FROM usage_incoming ORDER BY event_id
        ON CONFLICT (org_id, event_id) DO NOTHING
        RETURNING id, customer_id, meter_id, ts, value, unique_value
    ), counted AS (
        SELECT i.* FROM inserted i
        JOIN usage_series s ON s.org_id = :org AND s.customer_id = i.customer_id
                           AND s.meter_id = i.meter_id
    ), rolled AS (
        INSERT INTO usage_rollups AS r (org_id, customer_id, meter_id, hour, count, sum, max,
                                        latest_ts, latest_id, latest_value)
        SELECT :org, customer_id, meter_id, date_trunc('hour', ts AT TIME ZONE 'UTC')
                   AT TIME ZONE 'UTC',
               count(*), coalesce(sum(value), 0), max(value),
               (array_agg(ts ORDER BY ts DESC, id DESC))[1],
               (array_agg(id ORDER BY ts DESC, id DESC))[1],
               (array_agg(value ORDER BY ts DESC, id DESC))[1]
        FROM counted GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
        ON CONFLICT (org_id, customer_id, meter_id, hour) DO UPDATE SET
            count = r.count + excluded.count,
            sum = r.sum + excluded.sum,
            max = CASE WHEN r.max IS NULL THEN excluded.max
                       WHEN excluded.max IS NULL THEN r.max
                       ELSE greatest(r.max, excluded.max) END,
            latest_value = CASE WHEN (excluded.latest_ts, excluded.latest_id)
                                     > (r.latest_ts, r.latest_id)
                                THEN excluded.latest_value ELSE r.latest_value END,
            latest_id = CASE WHEN (excluded.latest_ts, excluded.latest_id)
                                  > (r.latest_ts, r.latest_id)
                             THEN excluded.latest_id ELSE r.latest_id END,
            latest_ts = greatest(r.latest_ts, excluded.latest_ts)
        RETURNING 1
    ), uniques AS (
        INSERT INTO usage_unique_values (org_id, customer_id, meter_id, hour, value)
        SELECT DISTINCT :org, customer_id, meter_id,
               date_trunc('hour', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', unique_value
        FROM counted WHERE unique_value IS NOT NULL
        ORDER BY 2, 3, 4, 5
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM rolled),
           (SELECT count(*) FROM uniques)
    """
)


# the columns of a row for usage_incoming (COPY order)
_ID, _EVENT_ID, _CUSTOMER, _METER = 0, 1, 2, 3
_LATE = 9


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def _json(properties: object) -> str:
    """Properties as JSON text; Decimals stay exact JSON numbers (jsonb keeps them)."""
    if not properties:
        return "{}"
    return jsoncodec.encode(properties)


def meter_specs(session: Session, org_id: str) -> dict[str, MeterSpec]:
    rows = session.scalars(select(Meter).where(Meter.org_id == org_id)).all()
    return {
        m.event_name: MeterSpec(
            m.id,
            m.event_name,
            m.aggregation,  # type: ignore[arg-type]
            m.value_property,
            m.unique_property,
            {k: tuple(v) for k, v in (m.filters or {}).items()},
        )  # fmt: skip
        for m in rows
    }


def _resolve_customers(session: Session, org_id: str, refs: set[str]) -> dict[str, str]:
    """Customer references (id or external_id, as ``customers.resolve`` reads them) →
    customer id, live customers only."""
    if not refs:
        return {}
    ids = [r for r in refs if looks_like_id(r, "cus")]
    externals = [r for r in refs if not looks_like_id(r, "cus")]
    found: dict[str, str] = {}
    live = (Customer.org_id == org_id, Customer.deleted_at.is_(None))
    if ids:
        for (cid,) in session.execute(
            select(Customer.id).where(*live, bulk.among(Customer.id, ids))
        ):
            found[cid] = cid
    if externals:
        for cid, external in session.execute(
            select(Customer.id, Customer.external_id).where(
                *live, bulk.among(Customer.external_id, externals)
            )
        ):
            if external is not None:
                found[external] = cid
    return found


def ingest(
    session: Session,
    org_id: str,
    raw_events: Sequence[object],
    now: datetime,
    max_future: timedelta,
    check_nul: bool = True,
) -> IngestResult:
    """Validate, deduplicate and store events; count what happened to each. ``check_nul``
    may be False when the caller knows the JSON carried no ``\\u0000`` at all."""
    result = IngestResult()
    meters = meter_specs(session, org_id)
    parsed: list[ParsedEvent] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_events):
        event = parse_event(raw, index, meters, now, max_future, check_nul)
        if isinstance(event, Rejection):
            result.rejected.append(event)
        elif event.event_id in seen:
            result.duplicates += 1  # repeated inside the same batch
        else:
            seen.add(event.event_id)
            parsed.append(event)
    customers = _resolve_customers(session, org_id, {e.customer for e in parsed})
    events: list[ParsedEvent] = []
    rows: list[list[Any]] = []  # usage_incoming's columns, in COPY order
    ids = iter(new_ids("evt", len(parsed)))
    for event in parsed:
        customer_id = customers.get(event.customer)
        if customer_id is None:
            result.rejected.append(
                Rejection(
                    event.position, "unknown_customer", f"customer: no customer {event.customer!r}"
                )
            )
            continue
        properties = _json(event.properties)
        if len(properties) > MAX_PROPERTIES_BYTES // 4 and (
            len(properties.encode()) > MAX_PROPERTIES_BYTES
        ):
            message = f"properties: at most {MAX_PROPERTIES_BYTES} bytes as JSON"
            result.rejected.append(Rejection(event.position, "invalid_properties", message))
            continue
        events.append(event)
        rows.append(
            [
                next(ids), event.event_id, customer_id, event.meter_id, event.event_name,
                event.timestamp, event.value, event.unique_value, properties, False,
            ]
        )  # fmt: skip
    corrections = _closed_periods(session, org_id, rows, events, now, result)
    result.rejected.sort(key=lambda r: r.index)
    rows = [row for row in rows if row[_LATE] is not None]
    if not rows:
        return result
    session.execute(_TEMP)
    series.lock(session, org_id, "shared")
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor().copy(
        "COPY usage_incoming (id, event_id, customer_id, meter_id, event_name, ts, value,"
        " unique_value, properties, late) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)
    inserted, _, _ = session.execute(_FOLD, {"org": org_id, "now": now}).one()
    session.execute(text("TRUNCATE usage_incoming"))
    result.accepted = int(inserted)
    result.duplicates += len(rows) - int(inserted)
    if corrections:
        _bill_corrections(session, org_id, corrections, FrozenClock(now))
    if inserted:
        _check_anomalies(session, org_id, rows, now)
    return result


def _check_anomalies(session: Session, org_id: str, rows: list[list[Any]], now: datetime) -> None:
    """Flag (once per period) customers whose usage jumped on meters with a rule."""
    watched = {
        m.id: m
        for m in session.scalars(
            select(Meter).where(Meter.org_id == org_id, Meter.anomaly_multiplier.is_not(None))
        )
    }
    if not watched:
        return
    pairs = {(row[_CUSTOMER], row[_METER]) for row in rows if row[_METER] in watched}
    wins = late.windows(session, org_id, {customer for customer, _ in pairs}, now)
    for customer_id, meter_id in sorted(pairs):
        window = wins.get((customer_id, meter_id))
        if window is None:
            continue
        verdict = anomaly.assess(session, window.subscription, watched[meter_id])
        if verdict is not None:
            anomaly.record(
                session, window.subscription, watched[meter_id], verdict, FrozenClock(now), now
            )


@dataclass
class _Correction:
    window: late.Window
    meter_id: str
    period: tuple[datetime, datetime]
    before: int
    ids: dict[str, str] = field(default_factory=dict)  # server id → event_id


def _closed_periods(
    session: Session, org_id: str, rows: list[list[Any]], events: list[ParsedEvent],
    now: datetime, result: IngestResult,
) -> dict[tuple[str, str, datetime], _Correction]:  # fmt: skip
    """Find events for periods already closed: reject them (``period_closed``) or, when the
    org bills late usage, mark them late and note what their period came to before them.
    A rejected row gets ``None`` as its ``late`` field (dropped by the caller)."""
    counted = [i for i, row in enumerate(rows) if row[_METER] is not None]
    if not counted:
        return {}
    wins = late.windows(session, org_id, {rows[i][_CUSTOMER] for i in counted}, now)
    if not wins:
        return {}
    policy = session.scalar(select(Organization.late_usage).where(Organization.id == org_id))
    corrections: dict[tuple[str, str, datetime], _Correction] = {}
    for i in counted:
        row, ts = rows[i], events[i].ts
        meter_id = row[_METER]
        window = wins.get((row[_CUSTOMER], meter_id))
        if window is None or ts >= window.open_from:
            continue
        if ts < window.subscription.start_at:
            continue  # before the subscription: no invoice covers it
        if policy != "adjust":
            result.rejected.append(
                Rejection(events[i].position, "period_closed",
                          "timestamp: falls in a billing period that is already invoiced")
            )  # fmt: skip
            row[_LATE] = None
            continue
        row[_LATE] = True
        period = late.period_containing(session, window.subscription, ts)
        key = (window.subscription.id, meter_id, period[0])
        if key not in corrections:
            before = late.charge_amount(session, window.subscription, meter_id, *period)
            corrections[key] = _Correction(window, meter_id, period, before)
        corrections[key].ids[row[_ID]] = row[_EVENT_ID]
    return corrections


def _bill_corrections(
    session: Session, org_id: str, corrections: dict[tuple[str, str, datetime], _Correction],
    clock: Clock,
) -> None:  # fmt: skip
    """After the fold: the difference per closed period, naming the events that were new."""
    for c in corrections.values():
        stored = set(
            session.scalars(
                select(UsageEvent.id).where(
                    UsageEvent.org_id == org_id, UsageEvent.id.in_(list(c.ids))
                )
            )
        )
        fresh = [event_id for sid, event_id in c.ids.items() if sid in stored]
        if not fresh:
            continue
        after = late.charge_amount(session, c.window.subscription, c.meter_id, *c.period)
        late.record_delta(
            session, c.window.subscription, c.meter_id, c.period, c.before, after, fresh,
            "Late usage", clock,
        )  # fmt: skip
