"""Routes: /v1/meter_points, /v1/meter_readings (one, CSV import, list, get)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from kassa.core.context import Principal
from kassa.core.errors import field_error
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import problem_responses
from kassa.identity.auth import MANAGE, READ, WRITE, db, idempotent, runtime
from kassa.readings import schemas, service
from kassa.runtime import Runtime

router = APIRouter(
    tags=["readings"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
LIMIT = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
CURSOR = Query(None, max_length=200)


def _max_future(rt: Runtime) -> timedelta:
    return timedelta(seconds=rt.settings.usage_max_future_skew_seconds)


@router.post("/v1/meter_points", status_code=201, response_model=schemas.MeterPoint)
def create_meter_point(
    body: schemas.MeterPointIn,
    who: Principal = Depends(MANAGE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.MeterPoint:
    """A physical meter whose readings become usage of a `sum` meter."""
    return service.point_to_schema(*service.create_point(session, who, body, rt.clock))


@router.get("/v1/meter_points", response_model=Page[schemas.MeterPoint])
def list_meter_points(
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[schemas.MeterPoint]:
    rows, has_more, next_cursor = service.list_points(session, who, limit, cursor)
    return Page(
        data=[service.point_to_schema(p, m) for p, m in rows],
        has_more=has_more,
        next_cursor=next_cursor,
    )


@router.get("/v1/meter_points/{meter_point}", response_model=schemas.MeterPoint)
def get_meter_point(
    meter_point: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> schemas.MeterPoint:
    """By id or code."""
    return service.point_to_schema(*service.get_point(session, who, meter_point))


@router.post(
    "/v1/meter_readings",
    status_code=201,
    response_model=schemas.MeterReadingCreated,
    responses={
        200: {
            "model": schemas.MeterReadingCreated,
            "description": "An identical reading was already recorded: it is returned and "
            "nothing changed",
        }
    },
)
def record_meter_reading(
    body: schemas.MeterReadingIn,
    response: Response,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.MeterReadingCreated:
    """Record a register value (`quality: manual` for one typed in by hand) and bring the
    meter point's derived usage events in step: superseded ones are voided, new ones
    ingested, in this request's transaction."""
    source = "manual" if body.quality == "manual" else "api"
    recorded = service.record_reading(session, who, body, source, rt.clock, _max_future(rt))
    if not recorded.created:
        response.status_code = 200
    return schemas.MeterReadingCreated(
        **service.reading_to_schema(recorded.reading).model_dump(),
        events=recorded.events.to_schema(),
    )


@router.post(
    "/v1/meter_readings/import",
    response_model=schemas.ReadingImportSummary,
    openapi_extra={"requestBody": {"required": True,
                                   "content": {"text/csv": {"schema": {"type": "string"}}}}},
)  # fmt: skip
async def import_meter_readings(
    request: Request,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.ReadingImportSummary:
    """CSV `meter_point,read_at,reading,quality[,customer,rollover,replacement[,start_value]]`
    with a header row; rows are applied in file order, each on its own (a bad row is
    reported by its data row number, from 1, and the others stand)."""
    try:
        text = (await request.body()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise field_error("body", "must be UTF-8 encoded CSV") from None
    result = await run_in_threadpool(
        service.import_csv, session, who, text, rt.clock, _max_future(rt)
    )
    return result.to_schema()


@router.get("/v1/meter_readings", response_model=Page[schemas.MeterReading])
def list_meter_readings(
    meter_point: str | None = Query(None, max_length=100, description="Id or code"),
    customer: str | None = Query(None, max_length=255, description="Id or external_id"),
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[schemas.MeterReading]:
    """Newest recorded first."""
    rows, has_more, next_cursor = service.list_readings(
        session, who, meter_point, customer, limit, cursor
    )
    return Page(
        data=[service.reading_to_schema(r) for r in rows],
        has_more=has_more,
        next_cursor=next_cursor,
    )


@router.get("/v1/meter_readings/{reading_id}", response_model=schemas.MeterReading)
def get_meter_reading(
    reading_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> schemas.MeterReading:
    return service.reading_to_schema(service.resolve_reading(session, who, reading_id))
