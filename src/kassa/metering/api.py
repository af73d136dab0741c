"""Routes: /v1/events (one, batch, CSV import, void, list), /v1/customers/{id}/usage."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from kassa.catalog import meters as meter_service
from kassa.catalog.errors import MeterNotFound
from kassa.core import jsoncodec
from kassa.core.context import Principal
from kassa.core.errors import FieldError, ValidationFailed, field_error
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import Timestamp, problem_responses
from kassa.customers import service as customers
from kassa.identity.auth import READ, WRITE, db, idempotent, runtime
from kassa.metering import anomaly, ingest, rules, service
from kassa.metering.models import UsageEvent
from kassa.metering.rules import Rejection
from kassa.metering.schemas import (
    BATCH_SCHEMA,
    EVENT_SCHEMA,
    AnomalyOut,
    IngestSummary,
    RejectedEvent,
    UsageEventOut,
    UsageGroup,
    UsageOut,
    VoidIn,
)
from kassa.runtime import Runtime

router = APIRouter(
    tags=["metering"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
CSV_COLUMNS = ("event_id", "customer", "event_name", "timestamp", "value")
CSV_CHUNK = 5_000


def _summary(result: ingest.IngestResult) -> IngestSummary:
    return IngestSummary(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            RejectedEvent(index=r.index, code=r.code, message=r.message) for r in result.rejected
        ],
    )


def _json_body(body: bytes) -> Any:
    try:
        return jsoncodec.decode_exact(body)
    except (ValueError, RecursionError):
        raise field_error("body", "must be a UTF-8 encoded JSON document") from None


def _run(
    session: Session, who: Principal, rt: Runtime, events: list[Any], check_nul: bool = True
) -> ingest.IngestResult:
    skew = timedelta(seconds=rt.settings.usage_max_future_skew_seconds)
    return ingest.ingest(session, who.org_id, events, rt.clock.now(), skew, check_nul)


def _generic_batch(raw_body: bytes) -> list[Any]:
    body = _json_body(raw_body)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise field_error("events", "must be a list of events")
    if set(body) - {"events"}:
        raise field_error(sorted(set(body) - {"events"})[0], "unknown field")
    if len(body["events"]) > ingest.MAX_BATCH:
        raise field_error("events", f"at most {ingest.MAX_BATCH} events per batch")
    events: list[Any] = body["events"]
    return events


@router.post(
    "/v1/events",
    status_code=202,
    response_model=IngestSummary,
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"application/json": {"schema": EVENT_SCHEMA}}}},
)  # fmt: skip
async def ingest_one(
    request: Request,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> IngestSummary:
    """One usage event. A duplicate `event_id` is acknowledged and changes nothing."""
    event = _json_body(await request.body())
    result = await run_in_threadpool(_run, session, who, rt, [event])
    if result.rejected:
        rejection = result.rejected[0]
        field, _, message = rejection.message.partition(": ")
        if not message:
            field, message = "body", rejection.message
        err = ValidationFailed(detail=rejection.message, errors=[FieldError(field, message)])
        err.extra["code"] = rejection.code
        raise err
    return _summary(result)


@router.post(
    "/v1/events/batch",
    status_code=202,
    response_model=IngestSummary,
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"application/json": {"schema": BATCH_SCHEMA}}}},
)  # fmt: skip
async def ingest_batch(
    request: Request,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> IngestSummary:
    """Up to 10 000 events; each is accepted, a counted duplicate, or rejected by index."""
    raw_body = await request.body()
    events: list[Any] | None = await run_in_threadpool(rules.decode_batch, raw_body)
    if events is None:  # something in it is off: the generic path names each fault
        events = await run_in_threadpool(_generic_batch, raw_body)
    result = await run_in_threadpool(_run, session, who, rt, events, rules.may_hold_nul(raw_body))
    return _summary(result)


@router.post(
    "/v1/events/import",
    status_code=202,
    response_model=IngestSummary,
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"text/csv": {"schema": {"type": "string"}}}}},
)  # fmt: skip
async def import_csv(
    request: Request,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> IngestSummary:
    """CSV `event_id,customer,event_name,timestamp,value[,properties_json]` with a header
    row, streamed in chunks; the report's `index` is the data row number (from 1)."""
    meters = await run_in_threadpool(ingest.meter_specs, session, who.org_id)
    total = ingest.IngestResult()
    pending: list[tuple[int, Any]] = []
    header_seen = False
    row_number = 0
    buffer = ""

    async def flush() -> None:
        if not pending:
            return
        for index, item in pending:
            if isinstance(item, str):
                total.rejected.append(Rejection(index, "invalid_row", item))
        good = [(i, e) for i, e in pending if not isinstance(e, str)]
        indexes = [i for i, _ in good]
        result = await run_in_threadpool(_run, session, who, rt, [e for _, e in good])
        total.accepted += result.accepted
        total.duplicates += result.duplicates
        total.rejected.extend(
            Rejection(indexes[r.index], r.code, r.message) for r in result.rejected
        )
        pending.clear()

    def rows(text: str) -> list[list[str]]:
        try:
            return list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise field_error("body", f"is not valid CSV: {exc}") from None

    async for chunk in request.stream():
        try:
            buffer += chunk.decode("utf-8")
        except UnicodeDecodeError:
            raise field_error("body", "must be UTF-8 encoded CSV") from None
        *complete, buffer = buffer.split("\n")
        for line_rows in rows("\n".join(complete)) if complete else []:
            if not header_seen:
                header_seen = True
                if tuple(c.strip() for c in line_rows[:5]) != CSV_COLUMNS:
                    raise field_error(
                        "body", f"the header must be {','.join(CSV_COLUMNS)}[,properties_json]"
                    )
                continue
            row_number += 1
            pending.append((row_number, _csv_event(line_rows, meters)))
            if len(pending) >= CSV_CHUNK:
                await flush()
    if buffer.strip():
        for line_rows in rows(buffer):
            if not header_seen:
                raise field_error("body", "a header row is required")
            row_number += 1
            pending.append((row_number, _csv_event(line_rows, meters)))
    await flush()
    total.rejected.sort(key=lambda r: r.index)
    return _summary(total)


def _csv_event(row: list[str], meters: dict[str, Any]) -> Any:
    """A CSV row as an event object; malformed rows become objects parse_event rejects."""
    if len(row) not in (5, 6):
        return f"expected 5 or 6 columns, got {len(row)}"
    event_id, customer, event_name, timestamp, value = (c.strip() for c in row[:5])
    properties: Any = {}
    if len(row) == 6 and row[5].strip():
        try:
            properties = jsoncodec.decode_exact(row[5])
        except (ValueError, RecursionError):  # nested deeper than msgspec decodes: refused
            return "properties_json: is not valid JSON"
    meter = meters.get(event_name)
    if isinstance(properties, dict) and meter is not None and meter.value_property and value:
        properties = {**properties, meter.value_property: value}
    return {"event_id": event_id, "customer": customer, "event_name": event_name,
            "timestamp": timestamp, "properties": properties}  # fmt: skip


@router.post("/v1/events/{event_id}/void", response_model=UsageEventOut)
def void_event(
    event_id: str,
    body: VoidIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> UsageEventOut:
    """Remove an event's effect; it stays on record, marked voided, with the reason."""
    return _event_out(service.void(session, who.org_id, event_id, body.reason, rt.clock))


def _event_out(e: UsageEvent) -> UsageEventOut:
    return UsageEventOut(
        id=e.id, event_id=e.event_id, customer=e.customer_id, event_name=e.event_name,
        meter=e.meter_id, timestamp=e.ts, value=e.value, properties=e.properties,
        received_at=e.received_at, late=e.late, voided_at=e.voided_at, void_reason=e.void_reason,
    )  # fmt: skip


@router.get("/v1/events", response_model=Page[UsageEventOut])
def list_events(
    customer: str | None = Query(None, max_length=255),
    meter: str | None = Query(None, max_length=100),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[UsageEventOut]:
    customer_id = customers.resolve(session, who.org_id, customer).id if customer else None
    meter_id = meter_service.resolve(session, who.org_id, meter).id if meter else None
    rows, has_more, next_cursor = service.list_events(
        session, who.org_id, customer_id, meter_id, limit, cursor
    )
    return Page(data=[_event_out(e) for e in rows], has_more=has_more, next_cursor=next_cursor)


@router.get("/v1/customers/{customer}/usage", response_model=UsageOut)
def customer_usage(
    customer: str,
    meter: str = Query(max_length=100, description="Meter id or event_name"),
    from_: Timestamp | None = Query(None, alias="from"),
    to: Timestamp | None = Query(None),
    group_by: str | None = Query(None, max_length=100, description="A property to group by"),
    # a default, not default_factory: pydantic inspects a factory's signature on every call
    filter_: list[str] = Query([], alias="filter", description="property=value (repeatable)"),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> JSONResponse:
    """The meter's value for the customer over [from, to); without them, the customer's
    current billing period (of a subscription whose plan charges this meter)."""
    cust = customers.resolve(session, who.org_id, customer)
    try:
        m = meter_service.resolve(session, who.org_id, meter)
    except MeterNotFound:
        raise field_error("meter", "no such meter") from None
    start, end = from_, to
    sub = None
    if start is None or end is None:
        from kassa.subscriptions import service as subscriptions

        sub = subscriptions.current_subscription_for_meter(session, who.org_id, cust.id, m.id)
        period = (sub.current_period_start, sub.current_period_end) if sub else None
        if period is None:
            raise field_error(
                "from", "required: the customer has no subscription charging this meter"
            )
        start, end = start or period[0], end or period[1]
    if end <= start:
        raise field_error("to", "must be after from")
    filters: dict[str, str] = {}
    for item in filter_:
        name, sep, wanted = item.partition("=")
        if not sep or not name:
            raise field_error("filter", "use property=value")
        filters[name] = wanted
    out = UsageOut(customer=cust.id, meter=m.id, event_name=m.event_name,
                   aggregation=m.aggregation, value=Decimal(0), from_=start, to=end)  # fmt: skip
    if filters:
        overall = service.grouped_value(session, who.org_id, cust.id, m, start, end, None, filters)
        out.value = overall[0][1] if overall else Decimal(0)
    else:
        out.value = service.value(session, who.org_id, cust.id, m, start, end)
    if group_by is not None:
        groups = service.grouped_value(
            session, who.org_id, cust.id, m, start, end, group_by, filters
        )
        out.group_by = group_by
        out.groups = [UsageGroup(key=k, value=v) for k, v in groups]
    if sub is not None and from_ is None and to is None and not filters:
        verdict = anomaly.assess(session, sub, m)
        if verdict is not None:
            out.anomaly = AnomalyOut(
                flagged=verdict.flagged,
                median=verdict.median,
                multiplier=verdict.multiplier,
                periods=verdict.periods,
            )
    return JSONResponse(out.model_dump(mode="json", by_alias=True))
