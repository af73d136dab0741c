"""What happens to subscriptions as time passes, one transition at a time, in time order:
a scheduled start, the trial-will-end notice, the trial's end, a period's end (roll over,
apply a pending change, or end a subscription canceled at period end).

Used by test clocks (advance) and by the periodic job for real time. The invoicing of
each ended period hooks in at ``_roll`` (next issue). Every step is idempotent: it acts
only when ``next_action_at`` is due and moves it forward in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.customers.models import Customer
from kassa.db.engine import Database
from kassa.orgs.models import Organization
from kassa.subscriptions import support
from kassa.subscriptions.models import Subscription

log = structlog.get_logger("kassa.subscriptions")
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


def step(session: Session, sub: Subscription, clock: Clock) -> datetime:
    """Apply the one transition due at ``sub.next_action_at``; return its time."""
    at = sub.next_action_at
    assert at is not None
    customer = support.customer_of(session, sub)
    tz = support.timezone_of(session, customer)
    if sub.status == "scheduled":
        sub.status = "trialing" if sub.trial_end is not None else "active"
        support.emit(session, clock, sub, "subscription.updated", at)
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
    elif sub.cancel_at_period_end:
        sub.status = "canceled"
        sub.ended_at = sub.current_period_end
        support.emit(session, clock, sub, "subscription.canceled", at)
    else:
        _roll(session, sub, tz)
        support.emit(session, clock, sub, "subscription.updated", at)
    sub.next_action_at = support.next_action(sub)
    sub.updated_at = clock.now()
    session.flush()
    return at


def advance(session: Session, sub: Subscription, until: datetime, clock: Clock) -> int:
    """Run every transition of one subscription due at or before ``until``."""
    steps = 0
    while sub.next_action_at is not None and sub.next_action_at <= until:
        step(session, sub, clock)
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


def advance_due(db: Database, clock: Clock) -> int:
    """Real time: every org's subscriptions (of customers without a test clock) that are
    due now. One short transaction per org; rows locked SKIP LOCKED so workers share."""
    now = clock.now()
    with db.transaction() as session:
        org_ids = list(session.scalars(select(Organization.id).order_by(Organization.id)))
    total = 0
    for org_id in org_ids:
        with db.transaction(org_id) as session:
            subs = session.scalars(
                select(Subscription)
                .join(
                    Customer,
                    (Customer.org_id == Subscription.org_id)
                    & (Customer.id == Subscription.customer_id),
                )
                .where(
                    Subscription.org_id == org_id,
                    Subscription.next_action_at <= now,
                    Customer.test_clock_id.is_(None),
                )
                .order_by(Subscription.id)
                .with_for_update(of=Subscription, skip_locked=True)
            ).all()
            for sub in subs:
                total += advance(session, sub, now, clock)
    if total:
        log.info("subscriptions_advanced", transitions=total)
    return total
