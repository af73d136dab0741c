"""Routes: /v1/test_clocks (test-mode organizations only)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from kassa.clocks import service
from kassa.clocks.schemas import AdvanceIn, TestClockIn, TestClockOut
from kassa.core.context import Principal
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import problem_responses
from kassa.identity.auth import READ, WRITE, db, idempotent, runtime
from kassa.runtime import Runtime

router = APIRouter(
    prefix="/v1/test_clocks",
    tags=["test clocks"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)


@router.post("", status_code=201, response_model=TestClockOut)
def create_clock(
    body: TestClockIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> TestClockOut:
    return service.to_schema(service.create(session, who, body.name, body.frozen_time, rt.clock))


@router.get("", response_model=Page[TestClockOut])
def list_clocks(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[TestClockOut]:
    rows, has_more, next_cursor = service.list_clocks(session, who, limit, cursor)
    return Page(
        data=[service.to_schema(c) for c in rows], has_more=has_more, next_cursor=next_cursor
    )


@router.get("/{clock_id}", response_model=TestClockOut)
def get_clock(
    clock_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> TestClockOut:
    return service.to_schema(service.get(session, who, clock_id))


@router.post("/{clock_id}/advance", response_model=TestClockOut)
def advance_clock(
    clock_id: str,
    body: AdvanceIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> TestClockOut:
    return service.to_schema(service.advance(session, who, clock_id, body.frozen_time, rt.clock))
