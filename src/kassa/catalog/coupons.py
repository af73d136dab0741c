"""Coupon use cases. Redemption is counted atomically in the database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kassa.catalog import errors, schemas
from kassa.catalog.models import Coupon
from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.db.unique import flush_unique


def is_valid(coupon: Coupon, now: datetime) -> bool:
    if coupon.redeem_by is not None and coupon.redeem_by <= now:
        return False
    return coupon.max_redemptions is None or coupon.times_redeemed < coupon.max_redemptions


def to_schema(c: Coupon, now: datetime) -> schemas.Coupon:
    return schemas.Coupon(
        id=c.id, code=c.code, name=c.name, percent_off=c.percent_off, amount_off=c.amount_off,
        currency=c.currency, duration=c.duration,
        duration_in_periods=c.duration_in_periods, max_redemptions=c.max_redemptions,
        times_redeemed=c.times_redeemed, redeem_by=c.redeem_by, valid=is_valid(c, now),
        metadata=c.metadata_, created_at=c.created_at,
    )  # fmt: skip


def create(session: Session, principal: Principal, data: schemas.CouponIn, clock: Clock) -> Coupon:
    percent_off = None if data.percent_off is None else str(data.percent_off)
    coupon = Coupon(
        org_id=principal.org_id, id=new_id("cpn"), code=data.code, name=data.name,
        percent_off=percent_off, amount_off=data.amount_off, currency=data.currency,
        duration=data.duration, duration_in_periods=data.duration_in_periods,
        max_redemptions=data.max_redemptions, times_redeemed=0, redeem_by=data.redeem_by,
        metadata_=data.metadata or {}, created_at=clock.now(),
    )  # fmt: skip
    session.add(coupon)
    flush_unique(
        session, lambda _: errors.DuplicateCode(detail=f"A coupon with code {data.code!r} exists.")
    )
    return coupon


def resolve(session: Session, org_id: str, ref: str) -> Coupon:
    """A coupon by id or code."""
    column = Coupon.id if looks_like_id(ref, "cpn") else Coupon.code
    coupon = session.scalars(
        select(Coupon).where(Coupon.org_id == org_id, column == ref)
    ).one_or_none()
    if coupon is None:
        raise errors.CouponNotFound(detail=f"No coupon {ref!r} in this organization.")
    return coupon


def redeem(session: Session, org_id: str, ref: str, currency: str, now: datetime) -> Coupon:
    """Count one redemption, or refuse (expired, used up, wrong currency)."""
    coupon = resolve(session, org_id, ref)
    if coupon.currency is not None and coupon.currency != currency:
        raise errors.CouponNotRedeemable(
            detail=f"The coupon is in {coupon.currency}; the plan bills in {currency}."
        )
    if coupon.redeem_by is not None and coupon.redeem_by <= now:
        raise errors.CouponNotRedeemable(detail="The coupon's redeem_by date has passed.")
    counted = session.execute(
        update(Coupon)
        .where(
            Coupon.org_id == org_id,
            Coupon.id == coupon.id,
            (Coupon.max_redemptions.is_(None)) | (Coupon.times_redeemed < Coupon.max_redemptions),
        )
        .values(times_redeemed=Coupon.times_redeemed + 1)
        .returning(Coupon.times_redeemed)
    ).first()
    if counted is None:
        raise errors.CouponNotRedeemable(detail="The coupon has no redemptions left.")
    session.refresh(coupon)
    return coupon


def list_coupons(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[Coupon], bool, str | None]:
    stmt = select(Coupon).where(Coupon.org_id == principal.org_id)
    return paginate(session, stmt, Coupon.id, limit, cursor)
