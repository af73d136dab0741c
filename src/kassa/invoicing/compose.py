"""What an invoice of a subscription contains at one of its billing points, computed from
the subscription as it is *before* the point is passed. The upcoming-invoice preview and
the real invoice share this code, so the preview is exactly what will be billed.

Billing points:
- ``start``: the subscription (or its first paid period, after a trial) begins and the plan
  is paid in advance: the first period's fixed fee.
- ``period_end``: a period ends: its fixed fee when paid in arrears, its usage, the next
  period's fixed fee when paid in advance (unless the subscription ends), and the
  adjustments (prorations, late-usage differences) waiting since the last invoice.
- ``final``: the subscription is canceled now: usage so far and the waiting adjustments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from kassa.catalog import coupons, plans
from kassa.catalog.models import Coupon, Plan, PlanVersion
from kassa.core.errors import AmountOutOfRange
from kassa.core.money import multiply, round_minor
from kassa.customers.models import Customer
from kassa.ledger import postings as accounts
from kassa.orgs import service as orgs
from kassa.orgs.models import Organization
from kassa.pricing import NO_USAGE, PlanPricing, Usage, rate_charge
from kassa.pricing import AmountOutOfRange as Unratable
from kassa.subscriptions import service as subscriptions
from kassa.subscriptions import support
from kassa.subscriptions.models import Adjustment, Subscription
from kassa.tax import rules as tax

Point = Literal["start", "period_end", "final"]

# The largest amount (minor units) an invoice line or an invoice's net sum may reach: 15
# digits (10 trillion in a 2-decimal currency). The columns are bigint (about 9.2e18);
# the headroom keeps tax, totals, credit and ledger balances inside them too. (Inputs are
# bounded lower, by ``kassa.core.money.MAX_AMOUNT``; this bounds what they multiply to.)
MAX_BILLED_AMOUNT = 10**15 - 1


UsageSource = Callable[[Session, Subscription, datetime, datetime], Mapping[str, Usage]]


def metered_usage(
    session: Session, sub: Subscription, start: datetime, end: datetime
) -> Mapping[str, Usage]:
    """What the subscription's charges are rated on: the metering pipeline's exact values."""
    plan, version = support.plan_of(session, sub)
    return usage_of(session, sub.org_id, sub.customer_id, plan, version, start, end)


def usage_of(
    session: Session, org_id: str, customer_id: str, plan: Plan, version: PlanVersion,
    start: datetime, end: datetime,
) -> Mapping[str, Usage]:  # fmt: skip
    from kassa.metering import service as metering

    return metering.usage_for_period(session, org_id, customer_id, plan, version, start, end)


@dataclass
class Line:
    kind: Literal["fixed", "usage", "proration", "discount", "one_off"]
    description: str
    quantity: Decimal
    unit_amount: Decimal | None
    amount: int
    account: str  # the revenue (or discount) ledger account
    period_start: datetime | None = None
    period_end: datetime | None = None
    meter: str | None = None
    event_ids: list[str] | None = None
    adjustment_id: str | None = None


@dataclass
class Parts:
    plan: Plan
    version: PlanVersion
    quantity: int
    currency: str
    period: tuple[datetime, datetime]
    issued_at: datetime
    lines: list[Line]
    coupon: Coupon | None
    decision: tax.TaxDecision
    adjustment_ids: list[str] = field(default_factory=list)

    @property
    def coupon_used(self) -> bool:
        return any(line.kind == "discount" for line in self.lines)


@dataclass(kw_only=True)
class Composition(Parts):
    customer: Customer


def coupon_applies(coupon: Coupon | None, periods_used: int) -> bool:
    if coupon is None:
        return False
    if coupon.duration == "forever":
        return True
    if coupon.duration == "once":
        return periods_used == 0
    return periods_used < (coupon.duration_in_periods or 0)


def discount_amount(coupon: Coupon, base: int) -> int:
    """Never more than the base, so the discount cannot make the invoice negative."""
    if base <= 0:
        return 0
    if coupon.percent_off is not None:
        return min(base, round_minor(multiply(base, Decimal(coupon.percent_off)) / 100))
    return min(base, coupon.amount_off or 0)


def discount_line(coupon: Coupon, lines: list[Line], period: tuple[datetime, datetime]) -> Line:
    base = sum(line.amount for line in lines if line.kind != "discount")
    amount = discount_amount(coupon, base)
    return Line(
        kind="discount", description=f"Coupon {coupon.code}", quantity=Decimal(1),
        unit_amount=Decimal(-amount), amount=-amount, account=accounts.DISCOUNTS,
        period_start=period[0], period_end=period[1],
    )  # fmt: skip


def party(customer: Customer) -> tax.TaxParty:
    return tax_party(customer.address, customer.tax_kind, customer.tax_id, customer.tax_exempt)


def tax_party(
    address: Mapping[str, Any] | None, kind: str, tax_id: str | None, exempt: bool
) -> tax.TaxParty:
    return tax.TaxParty(
        country=(address or {}).get("country"),
        kind=kind,  # type: ignore[arg-type]
        tax_id=tax_id,
        exempt=exempt,
    )


def tax_decision(
    session: Session, org_id: str, customer: Customer, on: datetime
) -> tax.TaxDecision:
    org = orgs.load(session, org_id)
    return decide(org, party(customer), customer.timezone or org.timezone, on)


def decide(org: Organization, buyer: tax.TaxParty, tz: str, on: datetime) -> tax.TaxDecision:
    """The tax decision for a sale to ``buyer`` on the day ``on`` falls on in zone ``tz``."""
    day = on.astimezone(ZoneInfo(tz)).date()
    return tax.determine(org.tax_ruleset, org.country, buyer, day)


class Billable(Protocol):
    """What a composition reads of a subscription (a ``Subscription`` row, or the bulk
    billing path's plain copy of one)."""

    @property
    def org_id(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def plan_id(self) -> str: ...
    @property
    def plan_version(self) -> int: ...
    @property
    def status(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def coupon_id(self) -> str | None: ...
    @property
    def coupon_periods_used(self) -> int: ...
    @property
    def start_at(self) -> datetime: ...
    @property
    def billing_anchor(self) -> datetime: ...
    @property
    def trial_end(self) -> datetime | None: ...
    @property
    def current_period_start(self) -> datetime: ...
    @property
    def current_period_end(self) -> datetime: ...
    @property
    def cancel_at_period_end(self) -> bool: ...
    @property
    def pending_plan_id(self) -> str | None: ...
    @property
    def pending_plan_version(self) -> int | None: ...
    @property
    def pending_quantity(self) -> int | None: ...


@dataclass
class Sources:
    """Where a composition's inputs come from: the session, one subscription at a time
    (``compose``), or a billing chunk's maps loaded once (the bulk billing path)."""

    plan: Callable[[str, int | None], tuple[Plan, PlanVersion]]  # (plan id, version)
    pricing: Callable[[Plan, PlanVersion], PlanPricing]
    usage: Callable[[datetime, datetime], Mapping[str, Usage]]
    adjustments: Callable[[], Sequence[Adjustment]]
    coupon: Callable[[str], Coupon]
    decision: Callable[[datetime], tax.TaxDecision]  # the tax decision on the issue date


def session_sources(
    session: Session, sub: Subscription, customer: Customer, usage_source: UsageSource
) -> Sources:
    def plan(plan_id: str, version: int | None) -> tuple[Plan, PlanVersion]:
        found = plans.resolve(session, sub.org_id, plan_id)
        return found, plans.version_of(session, found, version)

    return Sources(
        plan=plan,
        pricing=lambda p, v: plans.pricing(session, p, v),
        usage=lambda start, end: usage_source(session, sub, start, end),
        adjustments=lambda: subscriptions.pending_adjustments(session, sub),
        coupon=lambda ref: coupons.resolve(session, sub.org_id, ref),
        decision=lambda on: tax_decision(session, sub.org_id, customer, on),
    )


def compose(
    session: Session, sub: Subscription, point: Point, *, at: datetime | None = None,
    usage_source: UsageSource = metered_usage,
) -> Composition:  # fmt: skip
    """The invoice of ``sub`` at ``point`` (``at`` only for ``final``: the cancel instant)."""
    customer = support.customer_of(session, sub)
    tz = support.timezone_of(session, customer)
    parts = build(sub, point, tz, session_sources(session, sub, customer, usage_source), at=at)
    return Composition(customer=customer, **vars(parts))


def build(
    sub: Billable, point: Point, tz: str, src: Sources, *, at: datetime | None = None
) -> Parts:
    """``compose`` without the loading: every input comes from ``src``."""
    plan, version = src.plan(sub.plan_id, sub.plan_version)
    interval = support.interval_of(plan)
    revenue = accounts.revenue(plan.code)
    lines: list[Line] = []

    def fixed(v: PlanVersion, qty: int, start: datetime, end: datetime) -> None:
        fee = round_minor(support.fixed_fee(v.amount, qty, start, end, sub.billing_anchor,
                                            interval, tz))  # fmt: skip
        if fee:
            lines.append(
                Line(kind="fixed", description=v.name, quantity=Decimal(qty),
                     unit_amount=Decimal(fee) / qty, amount=fee, account=revenue,
                     period_start=start, period_end=end)
            )  # fmt: skip

    def usage(period: tuple[datetime, datetime]) -> None:
        pricing = src.pricing(plan, version)
        if pricing.charges:
            lines.extend(rate_usage(pricing, revenue, period, src.usage(*period)))

    if point == "start":
        period = (sub.current_period_start, sub.current_period_end)
        if sub.status in ("scheduled", "trialing"):
            paid_from = sub.trial_end or sub.start_at
            period = support.first_period(paid_from, sub.billing_anchor, interval, tz)
        issued_at = period[0]
        fixed(version, sub.quantity, *period)
    elif point == "final":
        assert at is not None
        period = (sub.current_period_start, max(at, sub.current_period_start))
        issued_at = at
        if sub.status not in ("paused", "scheduled", "trialing") and period[1] > period[0]:
            usage(period)
    else:
        issued_at = sub.current_period_end
        period = (sub.current_period_start, sub.current_period_end)
        billing = sub.status not in ("paused", "trialing", "scheduled")
        if billing and not version.pay_in_advance:
            fixed(version, sub.quantity, *period)
        if billing:
            usage(period)
        if billing and version.pay_in_advance and not sub.cancel_at_period_end:
            _, next_version = src.plan(
                sub.pending_plan_id or sub.plan_id, sub.pending_plan_version or sub.plan_version
            )
            next_period = support.first_period(period[1], sub.billing_anchor, interval, tz)
            fixed(next_version, sub.pending_quantity or sub.quantity, *next_period)
    adjustment_ids = []
    if point != "start":
        for adj in src.adjustments():
            adjustment_ids.append(adj.id)
            lines.append(
                Line(
                    kind="usage" if adj.kind == "usage_correction" else "proration",
                    description=adj.description, quantity=Decimal(1),
                    unit_amount=Decimal(adj.amount), amount=adj.amount, account=revenue,
                    meter=adj.meter_id, period_start=adj.period_start,
                    period_end=adj.period_end, event_ids=adj.event_ids, adjustment_id=adj.id,
                )
            )  # fmt: skip
    coupon = src.coupon(sub.coupon_id) if sub.coupon_id else None
    if coupon is not None and coupon_applies(coupon, sub.coupon_periods_used):
        line = discount_line(coupon, lines, period)
        if line.amount:
            lines.append(line)
    return Parts(
        plan=plan, version=version, quantity=sub.quantity, currency=plan.currency,
        period=period, issued_at=issued_at, lines=lines,
        coupon=coupon if coupon_applies(coupon, sub.coupon_periods_used) else None,
        decision=src.decision(issued_at), adjustment_ids=adjustment_ids,
    )  # fmt: skip


def rate_usage(
    pricing: PlanPricing, revenue: str, period: tuple[datetime, datetime],
    usage: Mapping[str, Usage],
) -> list[Line]:  # fmt: skip
    """The usage lines of ``pricing``'s charges, as ``pricing.rate`` makes them (the pure
    pricing library rates each charge), made into invoice lines directly: a billing
    chunk rates thousands of charges, and making a pricing line first for each made
    composing a fifth slower. A test holds the two alike."""
    start, end = period
    lines = []
    for charge in pricing.charges:
        try:
            rated = rate_charge(charge, usage.get(charge.meter, NO_USAGE))
        except Unratable as exc:
            raise AmountOutOfRange(
                detail=f"The usage of meter {charge.meter} cannot be billed: {exc.reason}."
            ) from None
        if not -MAX_BILLED_AMOUNT <= rated.amount <= MAX_BILLED_AMOUNT:
            raise AmountOutOfRange(
                detail=f"The usage of meter {charge.meter} comes to {rated.amount} minor units,"
                f" beyond {MAX_BILLED_AMOUNT}."
            )
        lines.append(
            Line("usage", charge.name or charge.meter, rated.quantity, rated.unit_amount,
                 rated.amount, revenue, start, end, charge.meter)
        )  # fmt: skip
    return lines


def usage_lines(
    session: Session, plan: Plan, version: PlanVersion, period: tuple[datetime, datetime],
    usage: Mapping[str, Usage],
) -> list[Line]:  # fmt: skip
    pricing = plans.pricing(session, plan, version)
    if not pricing.charges:
        return []
    return rate_usage(pricing, accounts.revenue(plan.code), period, usage)


def tax_rows(decision: tax.TaxDecision, lines: list[Line]) -> list[tax.TaxLine]:
    """The tax breakdown of lines that share one decision: one row, on their sum. Every
    invoice total (issued, re-rated, previewed) is computed from these, so the amounts are
    bounded here: ``AmountOutOfRange`` beyond ``MAX_BILLED_AMOUNT``."""
    if not lines:
        return []
    net = 0
    for line in lines:
        if not -MAX_BILLED_AMOUNT <= line.amount <= MAX_BILLED_AMOUNT:
            raise AmountOutOfRange(
                detail=f"The line {line.description!r} comes to {line.amount} minor units,"
                f" beyond {MAX_BILLED_AMOUNT}."
            )
        net += line.amount
    if not -MAX_BILLED_AMOUNT <= net <= MAX_BILLED_AMOUNT:
        raise AmountOutOfRange(
            detail=f"The invoice's lines come to {net} minor units, beyond {MAX_BILLED_AMOUNT}."
        )
    return tax.compute_tax([(decision, net)])
