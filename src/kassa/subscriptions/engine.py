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
from kassa.core.errors import field_error
from kassa.customers.models import Customer
from kassa.invoicing import compose
from kassa.invoicing import service as invoicing
from kassa.subscriptions import limits, support
from kassa.subscriptions.models import Subscription


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
    finalize_by: datetime | None = None, limit: int | None = None,
) -> int:  # fmt: skip
    """Run the transitions of one subscription due at or before ``until``, in time order,
    at most ``limit`` of them (default: ``KASSA_MAX_CATCHUP_PERIODS_PER_STEP``): one request
    or one chunk of a billing run does bounded work. What is left stays due
    (``next_action_at <= until``: ``behind``), so the billing run's next chunks (or the test
    clock's next advance) take it up where this left it; each step is idempotent, so nothing
    is billed twice or skipped. ``finalize_by``: see ``step``."""
    cap = limits.get().catchup_per_step if limit is None else limit
    steps = 0
    while steps < cap and behind(sub, until):
        step(session, sub, clock, finalize_by=finalize_by)
        steps += 1
    if steps and sub.billing_error is not None:  # billed again: the recorded error is over
        sub.billing_error = sub.billing_retry_at = None
        session.flush()
    return steps


def behind(sub: Subscription, until: datetime) -> bool:
    """Whether a transition of ``sub`` is due at or before ``until``."""
    return sub.next_action_at is not None and sub.next_action_at <= until


def _earliest_first(
    session: Session, subs: Sequence[Subscription], until: datetime, clock: Clock
) -> int:
    """Interleave several subscriptions' transitions strictly in time order, at most
    ``KASSA_MAX_CLOCK_ADVANCE_TRANSITIONS`` of them: an advance that needs more is refused
    (422 naming ``frozen_time``; the caller's transaction rolls back what it did), so one
    request does bounded work: advance in smaller steps."""
    cap = limits.get().clock_advance_transitions
    steps = 0
    pending = [s for s in subs if behind(s, until)]
    while pending:
        if steps >= cap:
            raise field_error(
                "frozen_time",
                f"this advance needs more than {cap} subscription transitions; advance the"
                " clock in smaller steps",
                code="clock_advance_too_large",
            )
        sub = min(pending, key=lambda s: (s.next_action_at, s.id))
        step(session, sub, clock)
        steps += 1
        pending = [s for s in subs if behind(s, until)]
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
