"""The upcoming invoice: exactly what the next invoice of a subscription will contain,
computed, not stored, by the same composition the billing run uses."""

from __future__ import annotations

from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.invoicing import compose
from kassa.subscriptions import service, support
from kassa.subscriptions.schemas import InvoiceLine, TaxLine, UpcomingInvoice
from kassa.subscriptions.support import InvalidTransition

UsageSource = compose.UsageSource


def next_point(status: str, pay_in_advance: bool) -> compose.Point:
    """A subscription that has not started paying yet next bills at its start when paid in
    advance; every other one at its period end."""
    if status in ("scheduled", "trialing") and pay_in_advance:
        return "start"
    return "period_end"


def upcoming(
    session: Session, principal: Principal, sub_id: str, clock: Clock,
    usage_source: UsageSource = compose.metered_usage,
) -> UpcomingInvoice:  # fmt: skip
    sub = service.current(session, principal.org_id, sub_id, clock)
    if sub.status == "canceled":
        raise InvalidTransition(detail="A canceled subscription has no upcoming invoice.")
    if sub.status == "trialing" and sub.cancel_at_period_end:
        raise InvalidTransition(detail="The subscription ends with its trial, unbilled.")
    _, version = support.plan_of(session, sub)
    point = next_point(sub.status, version.pay_in_advance)
    if sub.status in ("scheduled", "trialing") and not version.pay_in_advance:
        # paid in arrears after a trial: the first paid period, billed at its end
        c = compose.compose(session, sub, "start", usage_source=usage_source)
        usage = compose.usage_lines(
            session, c.plan, c.version, c.period, usage_source(session, sub, *c.period)
        )
        c.lines[:] = [line for line in c.lines if line.kind != "discount"] + usage
        if c.coupon is not None:
            coupon_line = compose.discount_line(c.coupon, c.lines, c.period)
            if coupon_line.amount:
                c.lines.append(coupon_line)
        c.issued_at = c.period[1]
        c.decision = compose.tax_decision(session, sub.org_id, c.customer, c.issued_at)
    else:
        c = compose.compose(session, sub, point, usage_source=usage_source)
    lines = [
        InvoiceLine(
            kind=line.kind, description=line.description, quantity=line.quantity,
            unit_amount=line.unit_amount, amount=line.amount, meter=line.meter,
            period_start=line.period_start or c.period[0],
            period_end=line.period_end or c.period[1], event_ids=line.event_ids,
        )
        for line in c.lines
    ]  # fmt: skip
    tax_rows = compose.tax_rows(c.decision, c.lines)
    subtotal = sum(line.amount for line in c.lines if line.kind != "discount")
    discount = -sum(line.amount for line in c.lines if line.kind == "discount")
    total = subtotal - discount + sum(t.amount for t in tax_rows)
    return UpcomingInvoice(
        customer=c.customer.id, subscription=sub.id, currency=c.currency,
        period_start=c.period[0], period_end=c.period[1], lines=lines, subtotal=subtotal,
        discount=discount,
        tax=[TaxLine(category=t.category, rate=t.rate, taxable_amount=t.taxable_amount,
                     amount=t.amount) for t in tax_rows],
        total=total, amount_due=max(total, 0), issued_at=c.issued_at,
        notes=[c.decision.note] if c.decision.note else [],
    )  # fmt: skip
