"""Subscription use cases. Runs inside the caller's transaction; never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.catalog import coupons, plans
from kassa.catalog.errors import CouponNotFound, PlanNotFound
from kassa.catalog.models import Plan, PlanVersion
from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.errors import field_error
from kassa.core.ids import new_id
from kassa.core.money import round_minor
from kassa.core.pagination import paginate
from kassa.customers import service as customers
from kassa.invoicing import service as invoicing
from kassa.subscriptions import engine, limits, rules, support
from kassa.subscriptions.models import Adjustment, Subscription
from kassa.subscriptions.schemas import ChangeIn, SubscriptionIn, SubscriptionPatch
from kassa.subscriptions.schemas import Subscription as SubscriptionOut
from kassa.subscriptions.support import CatchingUp, InvalidTransition, load, to_schema

LIVE = ("scheduled", "trialing", "active", "past_due", "suspended", "paused")


def current(session: Session, org_id: str, sub_id: str, clock: Clock) -> Subscription:
    """The subscription locked and caught up with its customer's now: transitions already
    due (a period that ended a moment ago) happen first, so a change or a preview always
    works on the period that is current. A subscription further behind than one request
    may catch up (``engine.advance``'s bound) is being caught up by the billing run (or the
    next test-clock advance): 409 ``subscription_catching_up`` until then."""
    sub = load(session, org_id, sub_id, lock=True)
    now = _now(session, sub, clock)
    engine.advance(session, sub, now, clock)
    if engine.behind(sub, now):
        raise CatchingUp()
    return sub


def _check_start(start: datetime | None, anchor: datetime | None, now: datetime) -> None:
    """Back-dating and future starts within the documented bounds (422 naming the field):
    a start long ago would make one request catch up thousands of periods."""
    bounds = limits.get()
    if start is not None:
        if start < now - bounds.max_backdate:
            raise field_error(
                "start_at",
                f"must not be more than {bounds.max_backdate.days} days in the past"
                " (KASSA_MAX_BACKDATE_DAYS)",
                code="out_of_range",
            )
        if start > now + bounds.max_future_start:
            raise field_error(
                "start_at",
                f"must not be more than {bounds.max_future_start.days} days in the future"
                " (KASSA_MAX_FUTURE_START_DAYS)",
                code="out_of_range",
            )
    if anchor is not None and not limits.in_range(anchor):
        raise field_error(
            "billing_anchor",
            f"must lie between {limits.EARLIEST.date()} and {limits.LATEST.date()}",
            code="out_of_range",
        )


def create(
    session: Session, principal: Principal, data: SubscriptionIn, clock: Clock
) -> Subscription:
    customer = customers.resolve_active(session, principal.org_id, data.customer, lock=True)
    try:
        plan = plans.resolve(session, principal.org_id, data.plan)
    except PlanNotFound:
        raise field_error("plan", "no such plan") from None
    version = plans.version_of(session, plan)
    now = customers.now_for(session, customer, clock)
    _check_start(data.start_at, data.billing_anchor, now)
    tz = support.timezone_of(session, customer)
    interval = support.interval_of(plan)
    start = data.start_at or now
    trial_days = version.trial_days if data.trial_days is None else data.trial_days
    trial_end = rules.trial_end(start, trial_days, tz) if trial_days else None
    paid_from = trial_end or start
    anchor = data.billing_anchor or paid_from
    if anchor > paid_from and anchor > rules.period_boundary(paid_from, interval, 1, tz):
        raise field_error("billing_anchor", "must be within one billing interval after the start")
    if trial_end is not None:
        period = (start, trial_end)
    else:
        period = support.first_period(start, anchor, interval, tz)
    coupon_id = None
    if data.coupon is not None:
        try:
            coupon_id = coupons.redeem(
                session, principal.org_id, data.coupon, plan.currency, now
            ).id
        except CouponNotFound:
            raise field_error("coupon", "no such coupon") from None
    status = "scheduled" if start > now else ("trialing" if trial_end else "active")
    sub = Subscription(
        org_id=principal.org_id, id=new_id("sub"), customer_id=customer.id, plan_id=plan.id,
        plan_version=version.version, status=status, quantity=data.quantity, coupon_id=coupon_id,
        coupon_periods_used=0, start_at=start, billing_anchor=anchor,
        trial_start=start if trial_end else None, trial_end=trial_end,
        trial_will_end_sent=False, current_period_start=period[0],
        current_period_end=period[1], cancel_at_period_end=False,
        metadata_=data.metadata or {}, entitlement_overrides={}, created_at=clock.now(),
        updated_at=clock.now(),
    )  # fmt: skip
    if trial_end is not None and trial_end - support.TRIAL_WILL_END_NOTICE <= start:
        sub.trial_will_end_sent = True  # a trial shorter than the notice gets no notice
    sub.next_action_at = support.next_action(sub)
    session.add(sub)
    session.flush()
    support.emit(session, clock, sub, "subscription.created", start)
    if status == "active" and version.pay_in_advance:
        invoicing.issue_for_subscription(session, sub, "start", now, clock)
    # a back-dated start catches up at once, up to the per-request bound; the billing run
    # (or the test clock's next advance) catches up the rest, in bounded steps
    engine.advance(session, sub, now, clock)
    return sub


def list_subscriptions(
    session: Session, principal: Principal, limit: int, cursor: str | None, *,
    customer: str | None = None, status: str | None = None,
) -> tuple[Sequence[Subscription], bool, str | None]:  # fmt: skip
    stmt = select(Subscription).where(Subscription.org_id == principal.org_id)
    if customer is not None:
        cust = customers.resolve(session, principal.org_id, customer)
        stmt = stmt.where(Subscription.customer_id == cust.id)
    if status is not None:
        stmt = stmt.where(Subscription.status == status)
    return paginate(session, stmt, Subscription.id, limit, cursor)


def _now(session: Session, sub: Subscription, clock: Clock) -> datetime:
    return customers.now_for(session, support.customer_of(session, sub), clock)


def _adjust(
    session: Session, sub: Subscription, description: str, amount: int,
    start: datetime, end: datetime, clock: Clock,
) -> None:  # fmt: skip
    if amount == 0:
        return
    session.add(
        Adjustment(
            org_id=sub.org_id, id=new_id("il"), subscription_id=sub.id, kind="proration",
            description=description, amount=amount, period_start=start, period_end=end,
            created_at=clock.now(),
        )
    )  # fmt: skip


def _period_fee(
    session: Session, sub: Subscription, plan: Plan, version: PlanVersion, quantity: int
) -> int:
    tz = support.timezone_of(session, support.customer_of(session, sub))
    return round_minor(
        support.fixed_fee(
            version.amount, quantity, sub.current_period_start, sub.current_period_end,
            sub.billing_anchor, support.interval_of(plan), tz,
        )
    )  # fmt: skip


def _prorate_change(
    session: Session, sub: Subscription, old: tuple[Plan, PlanVersion, int],
    new: tuple[Plan, PlanVersion, int], at: datetime, clock: Clock,
) -> None:  # fmt: skip
    """Adjustments for a change at ``at``, relative to what the period's invoices charge:
    in advance the old fee was billed for the whole period (credit its unused part, charge
    the new fee's remaining part); in arrears the period end bills the new fee for the whole
    period (charge the old fee's used part, credit the new fee's used part)."""
    ps, pe = sub.current_period_start, sub.current_period_end
    old_fee = _period_fee(session, sub, *old)
    new_fee = _period_fee(session, sub, *new)
    old_name = f"{old[1].name} × {old[2]}"
    new_name = f"{new[1].name} × {new[2]}"
    if new[1].pay_in_advance:
        credit, charge = rules.change_proration(old_fee, new_fee, ps, pe, at)
        _adjust(session, sub, f"Unused time on {old_name}", credit, at, pe, clock)
        _adjust(session, sub, f"Remaining time on {new_name}", charge, at, pe, clock)
    else:
        used_old = round_minor(rules.prorate(old_fee, ps, pe, ps, at))
        used_new = round_minor(rules.prorate(new_fee, ps, pe, ps, at))
        _adjust(session, sub, f"Time on {old_name}", used_old, ps, at, clock)
        _adjust(session, sub, f"{new_name} not due before the change", -used_new, ps, at, clock)


def change(
    session: Session, principal: Principal, sub_id: str, data: ChangeIn, clock: Clock
) -> Subscription:
    sub = current(session, principal.org_id, sub_id, clock)
    if sub.status == "canceled":
        raise InvalidTransition(detail="A canceled subscription cannot change.")
    old_plan, old_version = support.plan_of(session, sub)
    new_plan, new_version = old_plan, old_version
    if data.plan is not None:
        try:
            new_plan = plans.resolve(session, principal.org_id, data.plan)
        except PlanNotFound:
            raise field_error("plan", "no such plan") from None
        new_version = plans.version_of(session, new_plan)
        if new_plan.currency != old_plan.currency:
            raise field_error("plan", f"must bill in {old_plan.currency} like the current plan")
        if (new_plan.interval, new_plan.interval_count) != (
            old_plan.interval,
            old_plan.interval_count,
        ):
            raise field_error(
                "plan", "must have the same billing interval; start a new subscription"
            )
    quantity = data.quantity or sub.quantity
    if data.effective == "period_end":
        sub.pending_plan_id = new_plan.id
        sub.pending_plan_version = new_version.version
        sub.pending_quantity = quantity
    else:
        at = _now(session, sub, clock)
        billing = sub.status in ("active", "past_due", "suspended", "paused")
        if billing and data.proration == "prorate":
            _prorate_change(
                session, sub, (old_plan, old_version, sub.quantity),
                (new_plan, new_version, quantity), at, clock,
            )  # fmt: skip
        sub.plan_id, sub.plan_version, sub.quantity = new_plan.id, new_version.version, quantity
        sub.pending_plan_id = sub.pending_plan_version = sub.pending_quantity = None
    sub.updated_at = clock.now()
    session.flush()
    support.emit(session, clock, sub, "subscription.updated", _now(session, sub, clock))
    return sub


def cancel(
    session: Session, principal: Principal, sub_id: str, at_period_end: bool, prorate: bool,
    clock: Clock,
) -> Subscription:  # fmt: skip
    sub = current(session, principal.org_id, sub_id, clock)
    if sub.status == "canceled":
        return sub
    now = _now(session, sub, clock)
    sub.canceled_at = now
    if at_period_end and sub.status not in ("scheduled",):
        sub.cancel_at_period_end = True
        sub.updated_at = clock.now()
        session.flush()
        support.emit(session, clock, sub, "subscription.updated", now)
        return sub
    if prorate and sub.status in ("active", "past_due", "suspended"):
        plan, version = support.plan_of(session, sub)
        fee = _period_fee(session, sub, plan, version, sub.quantity)
        ps, pe = sub.current_period_start, sub.current_period_end
        name = f"{version.name} × {sub.quantity}"
        if version.pay_in_advance:
            unused = round_minor(rules.prorate(fee, ps, pe, now, pe))
            _adjust(session, sub, f"Unused time on {name}", -unused, now, pe, clock)
        else:
            used = round_minor(rules.prorate(fee, ps, pe, ps, now))
            _adjust(session, sub, f"Time on {name}", used, ps, now, clock)
    if sub.status in ("active", "past_due", "suspended", "paused"):
        session.flush()
        invoicing.issue_for_subscription(session, sub, "final", now, clock, at=now)
    sub.status = "canceled"
    sub.ended_at = now
    sub.next_action_at = None
    sub.updated_at = clock.now()
    session.flush()
    support.emit(session, clock, sub, "subscription.canceled", now)
    return sub


def pause(session: Session, principal: Principal, sub_id: str, clock: Clock) -> Subscription:
    """Stop billing, keep the periods ticking (no invoice for paused periods)."""
    sub = current(session, principal.org_id, sub_id, clock)
    if sub.status not in ("active", "past_due", "trialing"):
        raise InvalidTransition(detail=f"A {sub.status} subscription cannot be paused.")
    sub.status = "paused"
    sub.paused_at = _now(session, sub, clock)
    sub.updated_at = clock.now()
    session.flush()
    support.emit(session, clock, sub, "subscription.updated", sub.paused_at)
    return sub


def resume(session: Session, principal: Principal, sub_id: str, clock: Clock) -> Subscription:
    sub = current(session, principal.org_id, sub_id, clock)
    if sub.status != "paused":
        raise InvalidTransition(detail=f"A {sub.status} subscription is not paused.")
    now = _now(session, sub, clock)
    in_trial = sub.trial_end is not None and now < sub.trial_end
    sub.status = "trialing" if in_trial else "active"
    sub.paused_at = None
    sub.next_action_at = support.next_action(sub)
    sub.updated_at = clock.now()
    session.flush()
    support.emit(session, clock, sub, "subscription.updated", now)
    return sub


def patch(
    session: Session, principal: Principal, sub_id: str, data: SubscriptionPatch, clock: Clock
) -> Subscription:
    sub = load(session, principal.org_id, sub_id, lock=True)
    if data.metadata is not None:
        sub.metadata_ = data.metadata
    if data.entitlement_overrides is not None:
        sub.entitlement_overrides = data.entitlement_overrides
    sub.updated_at = clock.now()
    session.flush()
    support.emit(session, clock, sub, "subscription.updated", _now(session, sub, clock))
    return sub


def migrate_plan_version(
    session: Session, principal: Principal, plan: Plan, from_version: int, to_version: int,
    effective: str, clock: Clock,
) -> tuple[int, bool]:  # fmt: skip
    """Move running subscriptions from one version of a plan to another, at most
    ``KASSA_MAX_PLAN_MIGRATION_PER_REQUEST`` of them per call (bounded work per request):
    returns (how many moved, whether more are left: call again). Repeating is safe: a
    subscription moved (or with the move pending at its period end) is not taken again.
    One still catching up on past periods is left for a later call."""
    bound = limits.get().plan_migration_per_request
    stmt = select(Subscription.id).where(
        Subscription.org_id == principal.org_id,
        Subscription.plan_id == plan.id,
        Subscription.plan_version == from_version,
        Subscription.status.in_(LIVE),
    )
    if effective == "period_end":
        stmt = stmt.where(
            (Subscription.pending_plan_id.is_distinct_from(plan.id))
            | (Subscription.pending_plan_version.is_distinct_from(to_version))
        )
    ids = session.scalars(stmt.order_by(Subscription.id).limit(bound + 1)).all()
    has_more = len(ids) > bound
    target = plans.version_of(session, plan, to_version)
    moved = 0
    for sub_id in ids[:bound]:
        sub = load(session, principal.org_id, sub_id, lock=True)
        now = _now(session, sub, clock)
        engine.advance(session, sub, now, clock)
        if engine.behind(sub, now):
            has_more = True  # catching up in the billing run: a later call moves it
            continue
        if effective == "period_end":
            sub.pending_plan_id, sub.pending_plan_version = plan.id, to_version
            sub.pending_quantity = sub.pending_quantity or sub.quantity
        else:
            old = support.plan_of(session, sub)
            if sub.status in ("active", "past_due", "suspended"):
                _prorate_change(
                    session, sub, (*old, sub.quantity), (plan, target, sub.quantity),
                    _now(session, sub, clock), clock,
                )  # fmt: skip
            sub.plan_version = to_version
        sub.updated_at = clock.now()
        session.flush()
        support.emit(session, clock, sub, "subscription.updated", _now(session, sub, clock))
        moved += 1
    return moved, has_more


def has_live_subscriptions(session: Session, org_id: str, customer_id: str) -> bool:
    return (
        session.scalar(
            select(Subscription.id)
            .where(
                Subscription.org_id == org_id,
                Subscription.customer_id == customer_id,
                Subscription.status.in_(LIVE),
            )
            .limit(1)
        )
        is not None
    )


def export_for_customer(session: Session, org_id: str, customer_id: str) -> list[SubscriptionOut]:
    subs = session.scalars(
        select(Subscription)
        .where(Subscription.org_id == org_id, Subscription.customer_id == customer_id)
        .order_by(Subscription.id)
    ).all()
    return [to_schema(session, s) for s in subs]


def pending_adjustments(session: Session, sub: Subscription) -> Sequence[Adjustment]:
    return session.scalars(
        select(Adjustment)
        .where(
            Adjustment.org_id == sub.org_id,
            Adjustment.subscription_id == sub.id,
            Adjustment.invoiced_at.is_(None),
        )
        .order_by(Adjustment.id)
    ).all()


def current_subscription_for_meter(
    session: Session, org_id: str, customer_id: str, meter_id: str
) -> Subscription | None:
    """The customer's live subscription whose plan charges the meter (the earliest-created
    one if several do)."""
    return session.scalars(
        select(Subscription)
        .join(
            PlanVersion,
            (PlanVersion.org_id == Subscription.org_id)
            & (PlanVersion.plan_id == Subscription.plan_id)
            & (PlanVersion.version == Subscription.plan_version),
        )
        .where(
            Subscription.org_id == org_id,
            Subscription.customer_id == customer_id,
            Subscription.status.in_(LIVE),
            PlanVersion.charges.contains([{"meter": meter_id}]),
        )
        .order_by(Subscription.id)
        .limit(1)
    ).first()


def _iso(at: datetime) -> str:
    """As the API writes times (RFC 3339, UTC as "Z"): ``billing_error`` is shown as is."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def record_billing_failure(
    session: Session, org_id: str, sub_id: str, code: str, message: str, clock: Clock
) -> Subscription | None:
    """Record that billing ``sub_id`` failed (a run skipped it): ``billing_error`` with
    first/last failure and attempts, the next attempt after a backoff
    (``limits.retry_after``), and the event ``subscription.billing_failed``. None when the
    subscription is gone or held by another worker (it records its own outcome)."""
    sub = session.scalars(
        select(Subscription)
        .where(Subscription.org_id == org_id, Subscription.id == sub_id)
        .with_for_update(skip_locked=True)
    ).one_or_none()
    if sub is None:
        return None
    now = clock.now()
    previous = sub.billing_error or {}
    attempts = int(previous.get("attempts", 0)) + 1
    retry_at = now + limits.get().retry_after(attempts)
    sub.billing_error = {
        "code": code,
        "message": message[:500],
        "first_failed_at": previous.get("first_failed_at") or _iso(now),
        "last_failed_at": _iso(now),
        "attempts": attempts,
        "next_attempt_at": _iso(retry_at),
    }
    sub.billing_retry_at = retry_at
    sub.updated_at = now
    session.flush()
    support.emit(session, clock, sub, "subscription.billing_failed", now)
    return sub


def billing_errors(session: Session, org_id: str) -> Sequence[Subscription]:
    """The organization's subscriptions with a recorded billing error, oldest first."""
    return session.scalars(
        select(Subscription)
        .where(Subscription.org_id == org_id, Subscription.billing_error.is_not(None))
        .order_by(Subscription.id)
    ).all()
