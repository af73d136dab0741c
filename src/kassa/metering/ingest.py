"""Ingestion at database speed: validate in one pass, COPY into a temporary table, then one
statement inserts the new events (duplicates skipped by the unique key) and folds exactly
those into the hourly rollups. Runs in the caller's transaction: when the response says
accepted, the events and their rollups were committed together."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kassa.catalog.models import Meter
from kassa.core.ids import new_ids
from kassa.customers.models import Customer
from kassa.metering.rules import MeterSpec, ParsedEvent, Rejection, parse_event

MAX_BATCH = 10_000

_TEMP = text(
    """
    CREATE TEMPORARY TABLE IF NOT EXISTS usage_incoming (
        id text, event_id text, customer_id text, meter_id text, event_name text,
        ts timestamptz, value numeric, unique_value text, properties jsonb
    ) ON COMMIT DELETE ROWS
    """
)

_FOLD = text(
    """
    WITH inserted AS (
        INSERT INTO usage_events (org_id, id, event_id, customer_id, meter_id, event_name, ts,
                                  value, unique_value, properties, received_at, late)
        SELECT :org, id, event_id, customer_id, meter_id, event_name, ts, value, unique_value,
               properties, :now, false
        FROM usage_incoming ORDER BY event_id
        ON CONFLICT (org_id, event_id) DO NOTHING
        RETURNING id, customer_id, meter_id, ts, value, unique_value
    ), counted AS (
        SELECT * FROM inserted WHERE meter_id IS NOT NULL
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


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def _json(properties: object) -> str:
    """Properties as JSON text; Decimals become JSON numbers (stored as double precision:
    the meter's own value is kept exact in its column)."""
    if not properties:
        return "{}"
    return json.dumps(properties, default=float, separators=(",", ":"))


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
    """Customer references (id or external_id) → customer id, live customers only."""
    if not refs:
        return {}
    found: dict[str, str] = {}
    rows = session.execute(
        select(Customer.id, Customer.external_id).where(
            Customer.org_id == org_id,
            Customer.deleted_at.is_(None),
            (Customer.id.in_(refs)) | (Customer.external_id.in_(refs)),
        )
    ).all()
    for cid, external in rows:
        if cid in refs:
            found[cid] = cid
        if external is not None and external in refs:
            found[external] = cid
    return found


def ingest(
    session: Session,
    org_id: str,
    raw_events: Sequence[object],
    now: datetime,
    max_future: timedelta,
) -> IngestResult:
    """Validate, deduplicate and store events; count what happened to each."""
    result = IngestResult()
    meters = meter_specs(session, org_id)
    parsed: list[ParsedEvent] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_events):
        event = parse_event(raw, index, meters, now, max_future)
        if isinstance(event, Rejection):
            result.rejected.append(event)
        elif event.event_id in seen:
            result.duplicates += 1  # repeated inside the same batch
        else:
            seen.add(event.event_id)
            parsed.append(event)
    customers = _resolve_customers(session, org_id, {e.customer for e in parsed})
    rows = []
    ids = iter(new_ids("evt", len(parsed)))
    for event in parsed:
        customer_id = customers.get(event.customer)
        if customer_id is None:
            result.rejected.append(
                Rejection(
                    event.index, "unknown_customer", f"customer: no customer {event.customer!r}"
                )
            )
            continue
        rows.append(
            (
                next(ids), event.event_id, customer_id, event.meter_id, event.event_name,
                event.timestamp, event.value, event.unique_value,
                _json(event.properties),
            )
        )  # fmt: skip
    result.rejected.sort(key=lambda r: r.index)
    if not rows:
        return result
    session.execute(_TEMP)
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor().copy(
        "COPY usage_incoming (id, event_id, customer_id, meter_id, event_name, ts, value,"
        " unique_value, properties) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)
    inserted, _, _ = session.execute(_FOLD, {"org": org_id, "now": now}).one()
    session.execute(text("TRUNCATE usage_incoming"))
    result.accepted = int(inserted)
    result.duplicates += len(rows) - int(inserted)
    return result
