"""What happens to subscriptions as time passes, one transition at a time, in time order:
a scheduled start, the trial-will-end notice, the trial's end, a period's end (roll over,
apply a pending change, or end a subscription canceled at period end).

Used by test clocks (advance) and by the billing run for real time. A step that passes a
billing point issues its invoice first (the invoicing context composes it from the
subscription as it is before the step). Every step is idempotent: it acts only when
``next_action_at`` is due and moves it forward in the same transaction, and an invoice's
billing key is unique in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.customers.models import Customer
from kassa.invoicing import compose
from kassa.invoicing import service as invoicing
from kassa.subscriptions import support
from kassa.subscriptions.models import Subscription

MAX_STEPS = 100_000  # a runaway guard, far above any real catch-up


def _roll(session: Session, sub: Subscription, tz: str) -> None:
    """Start the next period; a pending change takes effect with it."""
    if sub.pending_plan_id is not None:
        sub.plan_id = sub.pending_plan_id
    if sub.pending_plan_version is not None:
        sub.plan_version = sub.pending_plan_version
    if sub.pending_quantity is not None:
        sub.quantity = sub.pending_quantity
    sub.pending_plan_id = sub.pending_plan_version = sub.pending_quantity = None
    plan, _ = support.plan_of(session, sub)
    start = sub.current_period_end
    sub.current_period_start, sub.current_period_end = support.first_period(
        start, sub.billing_anchor, support.interval_of(plan), tz
    )


def _bill(
    session: Session, sub: Subscription, point: compose.Point, at: datetime, clock: Clock,
    finalize_by: datetime | None,
) -> None:  # fmt: skip
    invoicing.issue_for_subscription(session, sub, point, at, clock, finalize_by=finalize_by)


def bills_in_advance(session: Session, sub: Subscription) -> bool:
    return support.plan_of(session, sub)[1].pay_in_advance


def step(
    session: Session, sub: Subscription, clock: Clock, *, finalize_by: datetime | None = None
) -> datetime:
    """Apply the one transition due at ``sub.next_action_at``; return its time. An invoice
    it issues whose grace and lateness are over by ``finalize_by`` (a billing run's as_of)
    is finalized at once (``invoicing.issue_for_subscription``)."""
    at = sub.next_action_at
    assert at is not None
    customer = support.customer_of(session, sub)
    tz = support.timezone_of(session, customer)
    if sub.status == "scheduled":
        sub.status = "trialing" if sub.trial_end is not None else "active"
        support.emit(session, clock, sub, "subscription.updated", at)
        if sub.status == "active" and bills_in_advance(session, sub):
            _bill(session, sub, "start", at, clock, finalize_by)
    elif sub.status == "trialing" and not sub.trial_will_end_sent:
        sub.trial_will_end_sent = True
        support.emit(session, clock, sub, "subscription.trial_will_end", at)
    elif sub.status == "trialing" and sub.cancel_at_period_end:
        sub.status = "canceled"  # canceled during the trial: it ends with the trial, unbilled
        sub.ended_at = sub.trial_end
        support.emit(session, clock, sub, "subscription.canceled", at)
    elif sub.status == "trialing":
        plan, _ = support.plan_of(session, sub)
        sub.status = "active"
        assert sub.trial_end is not None
        sub.current_period_start, sub.current_period_end = support.first_period(
            sub.trial_end, sub.billing_anchor, support.interval_of(plan), tz
        )
        support.emit(session, clock, sub, "subscription.updated", at)
        if bills_in_advance(session, sub):
            _bill(session, sub, "start", at, clock, finalize_by)
    elif sub.cancel_at_period_end:
        _bill(session, sub, "period_end", at, clock, finalize_by)
        sub.status = "canceled"
        sub.ended_at = sub.current_period_end
        support.emit(session, clock, sub, "subscription.canceled", at)
    else:
        _bill(session, sub, "period_end", at, clock, finalize_by)
        _roll(session, sub, tz)
        support.emit(session, clock, sub, "subscription.updated", at)
    sub.next_action_at = support.next_action(sub)
    sub.updated_at = clock.now()
    session.flush()
    return at


def advance(
    session: Session, sub: Subscription, until: datetime, clock: Clock, *,
    finalize_by: datetime | None = None,
) -> int:  # fmt: skip
    """Run every transition of one subscription due at or before ``until`` (``finalize_by``:
    see ``step``)."""
    steps = 0
    while sub.next_action_at is not None and sub.next_action_at <= until:
        step(session, sub, clock, finalize_by=finalize_by)
        steps += 1
        if steps > MAX_STEPS:
            raise RuntimeError(f"subscription {sub.id} did not settle")
    return steps


def _earliest_first(
    session: Session, subs: Sequence[Subscription], until: datetime, clock: Clock
) -> int:
    """Interleave several subscriptions' transitions strictly in time order."""
    steps = 0
    pending = [s for s in subs if s.next_action_at is not None and s.next_action_at <= until]
    while pending:
        sub = min(pending, key=lambda s: (s.next_action_at, s.id))
        step(session, sub, clock)
        steps += 1
        pending = [s for s in subs if s.next_action_at is not None and s.next_action_at <= until]
        if steps > MAX_STEPS:
            raise RuntimeError("test clock did not settle")
    return steps


def advance_test_clock(
    session: Session, org_id: str, clock_id: str, until: datetime, clock: Clock
) -> int:
    subs = session.scalars(
        select(Subscription)
        .join(
            Customer,
            (Customer.org_id == Subscription.org_id) & (Customer.id == Subscription.customer_id),
        )
        .where(Subscription.org_id == org_id, Customer.test_clock_id == clock_id)
        .order_by(Subscription.id)
        .with_for_update(of=Subscription)
    ).all()
    return _earliest_first(session, subs, until, clock)
