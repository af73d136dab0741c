"""Routes: /v1/subscriptions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from kassa.core.context import Principal
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import problem_responses
from kassa.identity.auth import READ, WRITE, db, idempotent, runtime
from kassa.runtime import Runtime
from kassa.subscriptions import schemas, service, support, upcoming
from kassa.subscriptions.schemas import Status

router = APIRouter(
    prefix="/v1/subscriptions",
    tags=["subscriptions"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
Out = schemas.Subscription


@router.post("", status_code=201, response_model=Out)
def create_subscription(
    body: schemas.SubscriptionIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Out:
    return support.to_schema(session, service.create(session, who, body, rt.clock))


@router.get("", response_model=Page[Out])
def list_subscriptions(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    customer: str | None = Query(None, max_length=255),
    status: Status | None = Query(None),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[Out]:
    rows, has_more, next_cursor = service.list_subscriptions(
        session, who, limit, cursor, customer=customer, status=status
    )
    return Page(
        data=[support.to_schema(session, s) for s in rows],
        has_more=has_more,
        next_cursor=next_cursor,
    )


@router.get("/{sub_id}", response_model=Out)
def get_subscription(
    sub_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> Out:
    return support.to_schema(session, support.load(session, who.org_id, sub_id))


@router.patch("/{sub_id}", response_model=Out)
def update_subscription(
    sub_id: str,
    body: schemas.SubscriptionPatch,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Out:
    return support.to_schema(session, service.patch(session, who, sub_id, body, rt.clock))


@router.post("/{sub_id}/change", response_model=Out)
def change_subscription(
    sub_id: str,
    body: schemas.ChangeIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Out:
    return support.to_schema(session, service.change(session, who, sub_id, body, rt.clock))


@router.post("/{sub_id}/cancel", response_model=Out)
def cancel_subscription(
    sub_id: str,
    body: schemas.CancelIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Out:
    sub = service.cancel(session, who, sub_id, body.at_period_end, body.prorate, rt.clock)
    return support.to_schema(session, sub)


@router.post("/{sub_id}/pause", response_model=Out)
def pause_subscription(
    sub_id: str,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Out:
    return support.to_schema(session, service.pause(session, who, sub_id, rt.clock))


@router.post("/{sub_id}/resume", response_model=Out)
def resume_subscription(
    sub_id: str,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Out:
    return support.to_schema(session, service.resume(session, who, sub_id, rt.clock))


@router.get("/{sub_id}/upcoming_invoice", response_model=schemas.UpcomingInvoice)
def upcoming_invoice(
    sub_id: str,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.UpcomingInvoice:
    return upcoming.upcoming(session, who, sub_id, rt.clock)
