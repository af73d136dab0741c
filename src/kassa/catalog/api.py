"""Routes: /v1/meters, /v1/plans, /v1/coupons."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from kassa.catalog import coupons, meters, plans, schemas
from kassa.core.context import Principal
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import INT4_MAX, problem_responses
from kassa.identity.auth import MANAGE, READ, db, idempotent, runtime
from kassa.runtime import Runtime

router = APIRouter(
    tags=["catalog"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
LIMIT = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
CURSOR = Query(None, max_length=200)


@router.post("/v1/meters", status_code=201, response_model=schemas.Meter)
def create_meter(
    body: schemas.MeterIn,
    who: Principal = Depends(MANAGE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Meter:
    return meters.to_schema(meters.create(session, who, body, rt.clock))


@router.get("/v1/meters", response_model=Page[schemas.Meter])
def list_meters(
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[schemas.Meter]:
    rows, has_more, next_cursor = meters.list_meters(session, who, limit, cursor)
    return Page(
        data=[meters.to_schema(m) for m in rows], has_more=has_more, next_cursor=next_cursor
    )


@router.get("/v1/meters/{meter}", response_model=schemas.Meter)
def get_meter(
    meter: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> schemas.Meter:
    return meters.to_schema(meters.resolve(session, who.org_id, meter))


@router.post("/v1/plans", status_code=201, response_model=schemas.Plan)
def create_plan(
    body: schemas.PlanIn,
    who: Principal = Depends(MANAGE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Plan:
    return plans.to_schema(session, *plans.create(session, who, body, rt.clock))


@router.get("/v1/plans", response_model=Page[schemas.Plan])
def list_plans(
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[schemas.Plan]:
    rows, has_more, next_cursor = plans.list_plans(session, who, limit, cursor)
    return Page(
        data=[plans.to_schema(session, p, v) for p, v in rows],
        has_more=has_more,
        next_cursor=next_cursor,
    )


@router.get("/v1/plans/{plan}", response_model=schemas.Plan)
def get_plan(
    plan: str,
    version: int | None = Query(
        None, ge=1, le=INT4_MAX, description="A specific version (default: latest)"
    ),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> schemas.Plan:
    return plans.to_schema(session, *plans.get(session, who, plan, version))


@router.patch("/v1/plans/{plan}", response_model=schemas.Plan)
def update_plan(
    plan: str,
    body: schemas.PlanPatch,
    who: Principal = Depends(MANAGE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Plan:
    return plans.to_schema(session, *plans.update(session, who, plan, body, rt.clock))


@router.post("/v1/plans/{plan}/migrate", response_model=schemas.MigrateOut)
def migrate_plan(
    plan: str,
    body: schemas.MigrateIn,
    who: Principal = Depends(MANAGE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.MigrateOut:
    from kassa.subscriptions import service as subscriptions

    row = plans.resolve(session, who.org_id, plan, lock=True)
    plans.version_of(session, row, body.from_version)
    plans.version_of(session, row, body.to_version)
    count, has_more = subscriptions.migrate_plan_version(
        session, who, row, body.from_version, body.to_version, body.effective, rt.clock
    )
    return schemas.MigrateOut(
        plan=row.id, from_version=body.from_version, to_version=body.to_version,
        effective=body.effective, subscriptions=count, has_more=has_more,
    )  # fmt: skip


@router.post("/v1/coupons", status_code=201, response_model=schemas.Coupon)
def create_coupon(
    body: schemas.CouponIn,
    who: Principal = Depends(MANAGE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Coupon:
    return coupons.to_schema(coupons.create(session, who, body, rt.clock), rt.clock.now())


@router.get("/v1/coupons", response_model=Page[schemas.Coupon])
def list_coupons(
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Page[schemas.Coupon]:
    rows, has_more, next_cursor = coupons.list_coupons(session, who, limit, cursor)
    now = rt.clock.now()
    return Page(
        data=[coupons.to_schema(c, now) for c in rows], has_more=has_more, next_cursor=next_cursor
    )


@router.get("/v1/coupons/{coupon}", response_model=schemas.Coupon)
def get_coupon(
    coupon: str,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Coupon:
    return coupons.to_schema(coupons.resolve(session, who.org_id, coupon), rt.clock.now())
