"""Meter points and readings: store a reading, then keep the usage events derived from the
meter point's readings in step with them, in the caller's transaction (docs/readings.md).

Recording a reading locks its meter point (``SELECT … FOR UPDATE``), so the readings of one
meter are applied one at a time; plans the derived events of the part of the series the
reading can change; voids the recorded derived events that are no longer planned and
ingests the planned ones not yet recorded.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from kassa.catalog import meters as meter_service
from kassa.catalog.errors import MeterNotFound
from kassa.catalog.models import Meter
from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.errors import Conflict, FieldError, KassaError, NotFound, field_error
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.customers import service as customers
from kassa.db.unique import flush_unique
from kassa.events import service as events
from kassa.metering import ingest as metering_ingest
from kassa.metering import service as metering
from kassa.metering.models import UsageEvent
from kassa.readings import schemas
from kassa.readings.models import MeterPoint, MeterReading
from kassa.readings.rules import (
    EVENT_ID_PREFIX,
    DerivedEvent,
    Reading,
    ReadingError,
    Register,
    effective_series,
    plan_events,
)

# Properties every derived usage event carries besides the meter's value property.
DERIVED_PROPERTIES = frozenset({"meter_point", "derived", "estimated"})
# ReadingError codes that are about the submitted values (422); the others conflict with
# the readings already stored (409).
_UNPROCESSABLE = frozenset(
    {
        "reading_invalid",
        "reading_out_of_range",
        "reading_decreased",
        "rollover_unsupported",
        "rollover_implausible",
    }
)
CSV_REQUIRED = ("meter_point", "read_at", "reading", "quality")
CSV_OPTIONAL = ("customer", "rollover", "replacement", "start_value")
MAX_IMPORT_ROWS = 10_000


class MeterPointNotFound(NotFound):
    code = "meter_point_not_found"
    title = "No such meter point"


class MeterReadingNotFound(NotFound):
    code = "meter_reading_not_found"
    title = "No such meter reading"


class MeterPointCodeTaken(Conflict):
    code = "duplicate_code"
    title = "That code is already taken in this organization"


class ReadingConflict(Conflict):
    code = "reading_conflict"
    title = "The reading conflicts with the readings already recorded"


class DerivedEventRejected(Conflict):
    code = "derived_event_rejected"
    title = "A usage event derived from the readings was rejected"


# --- meter points ---------------------------------------------------------------------------


def point_to_schema(point: MeterPoint, meter: Meter) -> schemas.MeterPoint:
    interval = next(
        (name for name, secs in schemas.SPREAD_SECONDS.items() if secs == point.spread_seconds),
        None,
    )
    return schemas.MeterPoint(
        id=point.id, code=point.code, meter=meter.id, event_name=meter.event_name,
        customer=point.customer_id, register_digits=point.register_digits,
        register_decimals=point.register_decimals, spread_interval=interval,
        unit=point.unit, created_at=point.created_at,
    )  # fmt: skip


def _reading_meter(session: Session, org_id: str, ref: str) -> Meter:
    """The usage meter a meter point bills on: a ``sum`` meter without filters (a derived
    event carries only the value and its own properties, so no filter could match it)."""
    try:
        meter = meter_service.resolve(session, org_id, ref)
    except MeterNotFound:
        raise field_error("meter", f"no meter {ref!r} in this organization") from None
    if meter.aggregation != "sum" or not meter.value_property:
        raise field_error(
            "meter", f"must be a sum meter (meter {meter.event_name!r} is {meter.aggregation})"
        )
    if meter.filters:
        raise field_error("meter", "must be a meter without filters")
    if meter.value_property in DERIVED_PROPERTIES:
        raise field_error(
            "meter", f"its value_property {meter.value_property!r} is reserved for readings"
        )
    return meter


def create_point(
    session: Session, principal: Principal, data: schemas.MeterPointIn, clock: Clock
) -> tuple[MeterPoint, Meter]:
    meter = _reading_meter(session, principal.org_id, data.meter)
    customer_id = None
    if data.customer is not None:
        customer_id = customers.resolve_active(session, principal.org_id, data.customer).id
    point = MeterPoint(
        org_id=principal.org_id, id=new_id("mp"), code=data.code, meter_id=meter.id,
        customer_id=customer_id, register_digits=data.register_digits,
        register_decimals=data.register_decimals,
        spread_seconds=schemas.SPREAD_SECONDS[data.spread_interval]
        if data.spread_interval else None,
        unit=data.unit, created_at=clock.now(),
    )  # fmt: skip
    session.add(point)
    flush_unique(
        session, lambda _: MeterPointCodeTaken(detail=f"A meter point {data.code!r} exists.")
    )
    events.record(
        session, clock, principal.org_id, "meter_point.created", point_to_schema(point, meter)
    )
    return point, meter


def resolve_point(session: Session, org_id: str, ref: str, *, lock: bool = False) -> MeterPoint:
    """A meter point by id or code; ``lock`` takes its row lock for the transaction."""
    column = MeterPoint.id if looks_like_id(ref, "mp") else MeterPoint.code
    stmt = select(MeterPoint).where(MeterPoint.org_id == org_id, column == ref)
    if lock:
        stmt = stmt.with_for_update()
    point = session.scalars(stmt).one_or_none()
    if point is None:
        raise MeterPointNotFound(detail=f"No meter point {ref!r} in this organization.")
    return point


def lock_points(session: Session, org_id: str, refs: set[str]) -> None:
    """Lock the meter points named by id or code, in id order: two imports that share
    meter points wait for each other instead of deadlocking."""
    if not refs:
        return
    ids = sorted(r for r in refs if looks_like_id(r, "mp"))
    codes = sorted(r for r in refs if not looks_like_id(r, "mp"))
    session.execute(
        select(MeterPoint.id)
        .where(
            MeterPoint.org_id == org_id,
            or_(MeterPoint.id.in_(ids), MeterPoint.code.in_(codes)),
        )
        .order_by(MeterPoint.id)
        .with_for_update()
    ).all()


def meter_of(session: Session, point: MeterPoint) -> Meter:
    return meter_service.by_ids(session, point.org_id, [point.meter_id])[point.meter_id]


def get_point(session: Session, principal: Principal, ref: str) -> tuple[MeterPoint, Meter]:
    point = resolve_point(session, principal.org_id, ref)
    return point, meter_of(session, point)


def list_points(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[tuple[MeterPoint, Meter]], bool, str | None]:
    stmt = select(MeterPoint).where(MeterPoint.org_id == principal.org_id)
    rows, has_more, next_cursor = paginate(session, stmt, MeterPoint.id, limit, cursor)
    found = meter_service.by_ids(session, principal.org_id, sorted({p.meter_id for p in rows}))
    return [(p, found[p.meter_id]) for p in rows], has_more, next_cursor


# --- readings -------------------------------------------------------------------------------


def reading_to_schema(row: MeterReading) -> schemas.MeterReading:
    return schemas.MeterReading(
        id=row.id, meter_point=row.meter_point_id, customer=row.customer_id,
        read_at=row.read_at, reading=format(row.value, "f"), quality=row.quality,
        rollover=row.rollover, replacement=row.replacement,
        start_value=format(row.start_value, "f"), source=row.source,
        created_by=row.created_by, created_at=row.created_at,
    )  # fmt: skip


@dataclass
class EventCounts:
    accepted: int = 0
    duplicates: int = 0
    voided: int = 0

    def add(self, other: EventCounts) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.voided += other.voided

    def to_schema(self) -> schemas.ReadingEvents:
        return schemas.ReadingEvents(
            accepted=self.accepted, duplicates=self.duplicates, voided=self.voided
        )


@dataclass
class Recorded:
    reading: MeterReading
    created: bool  # False: an identical reading was already recorded (nothing changed)
    events: EventCounts


def _reading_error(exc: ReadingError) -> KassaError:
    if exc.code in _UNPROCESSABLE:
        return field_error(exc.field, exc.message, code=exc.code)
    err = ReadingConflict(
        detail=f"{exc.field}: {exc.message}", errors=[FieldError(exc.field, exc.message)]
    )
    if exc.code != ReadingConflict.code:
        err.extra["code"] = exc.code
    return err


def _rule_reading(row: MeterReading) -> Reading:
    return Reading(
        read_at=row.read_at, value=row.value, quality=row.quality,  # type: ignore[arg-type]
        rollover=row.rollover, replacement=row.replacement, start_value=row.start_value,
    )  # fmt: skip


def _register(point: MeterPoint) -> Register:
    return Register(point.register_digits, point.register_decimals)


def _interval(point: MeterPoint) -> timedelta | None:
    return None if point.spread_seconds is None else timedelta(seconds=point.spread_seconds)


@dataclass
class _Window:
    """The stored readings a new reading at some instant can change the events of.

    ``effective_series`` runs oldest first and forgets everything before a kept actual,
    manual or replacement reading (an *anchor*), except that the anchor itself may inherit a
    rollover flag from the estimates just before it, and that flag is part of the revision of
    the pair that starts at the anchor. So with ``since`` the last anchor before the new
    reading and ``start`` the anchor before that one, planning the readings from ``start``
    gives exactly the full plan's events of every pair from ``since`` on (those are the events
    with ``timestamp >= since``); the pairs before ``since`` cannot change. Without two
    anchors before the new reading, the window is the whole series.
    """

    readings: list[MeterReading]
    since: datetime | None


def _window(session: Session, point: MeterPoint, at: datetime) -> _Window:
    mine = (MeterReading.org_id == point.org_id, MeterReading.meter_point_id == point.id)
    anchors = session.scalars(
        select(MeterReading.read_at)
        .where(
            *mine,
            MeterReading.read_at < at,
            or_(MeterReading.quality != "estimated", MeterReading.replacement.is_(True)),
        )
        .group_by(MeterReading.read_at)
        .order_by(MeterReading.read_at.desc())
        .limit(2)
    ).all()
    stmt = select(MeterReading).where(*mine)
    since = None
    if len(anchors) == 2:
        since = anchors[0]
        stmt = stmt.where(MeterReading.read_at >= anchors[1])
    rows = session.scalars(stmt.order_by(MeterReading.read_at, MeterReading.id)).all()
    return _Window(list(rows), since)


def _resolve_customer(session: Session, org_id: str, point: MeterPoint, ref: str | None) -> str:
    if ref is not None:
        return customers.resolve_active(session, org_id, ref).id
    if point.customer_id is None:
        raise field_error("customer", "required: the meter point has no customer")
    return customers.resolve_active(session, org_id, point.customer_id).id


def _same_instant(
    rows: Sequence[MeterReading], reading: Reading, customer_id: str
) -> MeterReading | None:
    """The stored reading this one repeats, if any; a *different* reading of the same
    quality at the same instant is a conflict (correct a reading by a better quality one)."""
    for row in rows:
        if row.read_at != reading.at or row.quality != reading.quality:
            continue
        same_values = (
            row.value == reading.value
            and row.rollover == reading.rollover
            and row.replacement == reading.replacement
            and row.start_value == reading.start_value
        )
        if same_values and row.customer_id == customer_id:
            return row
        name = "customer" if same_values else "read_at"
        message = (
            f"a different {row.quality} reading at {reading.at.isoformat()} is already"
            f" recorded ({row.id})"
        )
        raise ReadingConflict(detail=f"{name}: {message}", errors=[FieldError(name, message)])
    return None


def record_reading(
    session: Session,
    principal: Principal,
    data: schemas.MeterReadingIn,
    source: str,
    clock: Clock,
    max_future: timedelta,
) -> Recorded:
    """Store one reading (or find the identical one) and bring the derived events in step."""
    point = resolve_point(session, principal.org_id, data.meter_point, lock=True)
    customer_id = _resolve_customer(session, principal.org_id, point, data.customer)
    register = _register(point)
    try:
        reading = Reading(
            read_at=data.read_at, value=data.reading, quality=data.quality,
            rollover=data.rollover, replacement=data.replacement,
            start_value=Decimal(0) if data.start_value is None else data.start_value,
        )  # fmt: skip
        register.validate(reading.value)
        register.validate(reading.start_value, "start_value")
    except ReadingError as exc:
        raise _reading_error(exc) from None
    now = clock.now()
    if reading.at > now + max_future:
        raise field_error("read_at", "is in the future", code="reading_in_future")
    window = _window(session, point, reading.at)
    row = _same_instant(window.readings, reading, customer_id)
    created = row is None
    if row is None:
        row = MeterReading(
            org_id=principal.org_id, id=new_id("mr"), meter_point_id=point.id,
            customer_id=customer_id, read_at=reading.at, value=reading.value,
            quality=reading.quality, rollover=reading.rollover,
            replacement=reading.replacement, start_value=reading.start_value, source=source,
            created_by=principal.user_id, created_at=now,
        )  # fmt: skip
        session.add(row)
        session.flush()
        window.readings.append(row)
    counts = _sync_events(session, point, window, row.id, clock, max_future)
    if created:
        events.record(
            session, clock, principal.org_id, "meter_reading.created", reading_to_schema(row)
        )
    return Recorded(row, created, counts)


def _customers_by_instant(rows: Sequence[MeterReading]) -> dict[datetime, str]:
    """Per instant, the customer of the reading that stands for it (the best quality)."""
    rank = {"actual": 0, "manual": 1, "estimated": 2}
    best: dict[datetime, MeterReading] = {}
    for row in rows:
        held = best.get(row.read_at)
        if held is None or rank[row.quality] < rank[held.quality]:
            best[row.read_at] = row
    return {at: row.customer_id for at, row in best.items()}


def _derived_event(
    event: DerivedEvent, point: MeterPoint, meter: Meter, customer_id: str
) -> dict[str, Any]:
    assert meter.value_property is not None
    return {
        "event_id": event.event_id,
        "customer": customer_id,
        "event_name": meter.event_name,
        "timestamp": event.timestamp.isoformat(),
        "properties": {
            meter.value_property: format(event.value, "f"),
            "meter_point": point.code,
            "derived": True,
            "estimated": event.estimated,
        },
    }


def _sync_events(
    session: Session,
    point: MeterPoint,
    window: _Window,
    reading_id: str,
    clock: Clock,
    max_future: timedelta,
) -> EventCounts:
    """Void the recorded derived events of the window that are no longer planned and ingest
    the planned ones not yet recorded. A derived event belongs to the customer of the later
    reading of its pair (a move-out reading closes the old tenant's consumption)."""
    meter = meter_of(session, point)
    readings = [_rule_reading(r) for r in window.readings]
    try:
        planned = plan_events(point.id, readings, _register(point), _interval(point))
        series = effective_series(readings)
    except ReadingError as exc:
        raise _reading_error(exc) from None
    except ValueError as exc:  # more buckets than spread() takes: decades of hours
        raise field_error(
            "read_at",
            f"too far from the neighbouring reading to spread: {exc}",
            code="reading_span_too_long",
        ) from None
    if window.since is not None:
        planned = [e for e in planned if e.timestamp >= window.since]
    owner = _customers_by_instant(window.readings)
    instants = [r.at for r in series]
    # every customer a reading of the window names: an estimate superseded at its instant by
    # another customer's reading may still own recorded events
    everyone = sorted({r.customer_id for r in window.readings})
    stmt = select(UsageEvent.event_id).where(
        UsageEvent.org_id == point.org_id,
        UsageEvent.customer_id.in_(everyone),
        UsageEvent.meter_id == meter.id,
        UsageEvent.voided_at.is_(None),
        UsageEvent.event_id.startswith(EVENT_ID_PREFIX, autoescape=True),
        UsageEvent.properties["meter_point"].astext == point.code,
    )
    if window.since is not None:
        stmt = stmt.where(UsageEvent.ts >= window.since)
    recorded = set(session.scalars(stmt))
    stale = sorted(recorded - {e.event_id for e in planned})
    for event_id in stale:
        metering.void(session, point.org_id, event_id, f"superseded by reading {reading_id}", clock)
    fresh = [
        _derived_event(e, point, meter, owner[instants[bisect_left(instants, e.period_end)]])
        for e in planned
        if e.event_id not in recorded
    ]
    counts = EventCounts(duplicates=len(planned) - len(fresh), voided=len(stale))
    if fresh:
        result = metering_ingest.ingest(session, point.org_id, fresh, clock.now(), max_future)
        if result.rejected:
            first = result.rejected[0]
            err = DerivedEventRejected(detail=first.message)
            err.extra["reason"] = first.code
            raise err
        counts.accepted = result.accepted
        # an id voided by hand stays spent: it counts as a duplicate, not again as usage
        counts.duplicates += result.duplicates
    return counts


def resolve_reading(session: Session, principal: Principal, reading_id: str) -> MeterReading:
    row = session.scalars(
        select(MeterReading).where(
            MeterReading.org_id == principal.org_id, MeterReading.id == reading_id
        )
    ).one_or_none()
    if row is None:
        raise MeterReadingNotFound(detail=f"No meter reading {reading_id!r} in this organization.")
    return row


def list_readings(
    session: Session,
    principal: Principal,
    meter_point: str | None,
    customer: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[MeterReading], bool, str | None]:
    """Newest recorded first (the ids are time-sortable)."""
    stmt = select(MeterReading).where(MeterReading.org_id == principal.org_id)
    if meter_point is not None:
        point = resolve_point(session, principal.org_id, meter_point)
        stmt = stmt.where(MeterReading.meter_point_id == point.id)
    if customer is not None:
        cust = customers.resolve(session, principal.org_id, customer)
        stmt = stmt.where(MeterReading.customer_id == cust.id)
    return paginate(session, stmt, MeterReading.id, limit, cursor)


# --- CSV import -----------------------------------------------------------------------------


@dataclass
class ImportResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[schemas.RejectedRow] = field(default_factory=list)
    events: EventCounts = field(default_factory=EventCounts)

    def to_schema(self) -> schemas.ReadingImportSummary:
        return schemas.ReadingImportSummary(
            accepted=self.accepted,
            duplicates=self.duplicates,
            rejected=self.rejected,
            events=self.events.to_schema(),
        )


def _csv_rows(text: str) -> tuple[list[str], list[list[str]]]:
    try:
        rows = [
            row for row in csv.reader(io.StringIO(text, newline="")) if any(c.strip() for c in row)
        ]
    except csv.Error as exc:
        raise field_error("body", f"is not valid CSV: {exc}") from None
    if not rows:
        raise field_error("body", "a header row is required")
    header = [c.strip().lower() for c in rows[0]]
    optional = header[len(CSV_REQUIRED) :]
    if (
        tuple(header[: len(CSV_REQUIRED)]) != CSV_REQUIRED
        or tuple(optional) != CSV_OPTIONAL[: len(optional)]
    ):
        raise field_error(
            "body",
            f"the header must be {','.join(CSV_REQUIRED)}"
            f"[,{','.join(CSV_OPTIONAL[:3])}[,{CSV_OPTIONAL[3]}]]",
        )
    if len(rows) - 1 > MAX_IMPORT_ROWS:
        raise field_error("body", f"at most {MAX_IMPORT_ROWS} rows per import")
    return header, rows[1:]


def _row_input(header: list[str], row: list[str]) -> schemas.MeterReadingIn | str:
    """A CSV row as a reading, or the reason it is not one."""
    if not len(CSV_REQUIRED) <= len(row) <= len(header):
        return f"row: expected {len(CSV_REQUIRED)} to {len(header)} columns, got {len(row)}"
    cells = {name: cell.strip() for name, cell in zip(header, row, strict=False)}
    data: dict[str, Any] = {name: value for name, value in cells.items() if value != ""}
    data.setdefault("quality", "actual")
    try:
        return schemas.MeterReadingIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "row"
        return f"{name}: {first['msg']}"


def _rejection(index: int, exc: KassaError) -> schemas.RejectedRow:
    code = str(exc.extra.get("code", exc.code))
    message = f"{exc.errors[0].field}: {exc.errors[0].message}" if exc.errors else exc.detail
    return schemas.RejectedRow(index=index, code=code, message=message or exc.title)


def import_csv(
    session: Session, principal: Principal, text: str, clock: Clock, max_future: timedelta
) -> ImportResult:
    """Apply the rows in file order, each in its own savepoint: a failing row is reported
    by its data row number (from 1) and leaves no trace; the others stand."""
    header, rows = _csv_rows(text)
    inputs = [_row_input(header, row) for row in rows]
    lock_points(
        session, principal.org_id, {d.meter_point for d in inputs if not isinstance(d, str)}
    )
    result = ImportResult()
    for index, data in enumerate(inputs, start=1):
        if isinstance(data, str):
            result.rejected.append(
                schemas.RejectedRow(index=index, code="invalid_row", message=data)
            )
            continue
        try:
            with session.begin_nested():
                recorded = record_reading(session, principal, data, "csv", clock, max_future)
        except KassaError as exc:
            result.rejected.append(_rejection(index, exc))
            continue
        if recorded.created:
            result.accepted += 1
        else:
            result.duplicates += 1
        result.events.add(recorded.events)
    return result
