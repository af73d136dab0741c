"""Issuing, finalizing and settling invoices. Services work inside the caller's transaction
and never commit; the ledger records every money event once (keys derived from sources)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kassa.catalog import coupons, plans
from kassa.catalog.models import Meter, PlanVersion
from kassa.core.clock import Clock
from kassa.core.errors import Conflict, NotFound
from kassa.core.ids import new_id, new_ids
from kassa.events import service as events
from kassa.invoicing import compose
from kassa.invoicing.models import Invoice, InvoiceLine
from kassa.ledger import postings
from kassa.ledger import service as ledger
from kassa.orgs import service as orgs
from kassa.orgs.models import Organization
from kassa.subscriptions.models import Adjustment, Subscription
from kassa.tax import rules as tax


class InvoiceNotFound(NotFound):
    code = "invoice_not_found"
    title = "Invoice not found"


class InvalidInvoiceState(Conflict):
    code = "invalid_invoice_state"
    title = "The invoice is not in a state that allows this"


def load(session: Session, org_id: str, invoice_id: str, *, lock: bool = False) -> Invoice:
    stmt = select(Invoice).where(Invoice.org_id == org_id, Invoice.id == invoice_id)
    if lock:
        stmt = stmt.with_for_update()
    invoice = session.scalars(stmt).one_or_none()
    if invoice is None:
        raise InvoiceNotFound(detail=f"No invoice {invoice_id!r}.")
    return invoice


def lines_of(session: Session, invoice: Invoice) -> Sequence[InvoiceLine]:
    return session.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.org_id == invoice.org_id, InvoiceLine.invoice_id == invoice.id)
        .order_by(InvoiceLine.position)
    ).all()


# --- issuing ---------------------------------------------------------------------------


def issue_for_subscription(
    session: Session, sub: Subscription, point: compose.Point, now: datetime, clock: Clock,
    *, at: datetime | None = None, finalize_by: datetime | None = None,
) -> Invoice | None:  # fmt: skip
    """The invoice of ``sub`` at ``point``, once: the billing key (subscription + instant)
    is unique in the database, so a repeated or concurrent run finds it there and changes
    nothing. Returns None when there is nothing to bill or it was billed already.

    It is finalized at once, from the lines just composed, when its grace and the meters'
    lateness are over: at ``now`` if they are by then, else at ``finalize_by`` (a billing
    run's as_of, the time its second pass would finalize it at) if they are by then;
    otherwise it stays a draft until they are."""
    c = compose.compose(session, sub, point, at=at)
    if not c.lines:
        return None
    key = f"{sub.id}@{c.issued_at.isoformat()}" + (":final" if point == "final" else "")
    org = orgs.load(session, sub.org_id)
    lateness = _lateness(session, sub.org_id, c.version) if point != "start" else timedelta(0)
    grace_end = c.issued_at + timedelta(seconds=org.invoice_grace_seconds)
    # an in-advance fee charges no meter: it waits for the grace only, not for the end of
    # the period it pays for
    finalize_at = grace_end if point == "start" else max(grace_end, c.period[1] + lateness)
    invoice = _insert_draft(
        session, org, c.customer.id, c.currency, c.lines, c.decision, now, clock,
        subscription_id=sub.id, billing_key=key, period=c.period, issued_at=c.issued_at,
        finalize_at=finalize_at, plan_id=c.plan.id, plan_version=c.version.version,
        quantity=c.quantity, coupon_id=c.coupon.id if c.coupon_used and c.coupon else None,
        locale=c.customer.locale,
    )  # fmt: skip
    if invoice is None:
        return None
    if c.adjustment_ids:
        for adj in session.scalars(
            select(Adjustment).where(
                Adjustment.org_id == sub.org_id, Adjustment.id.in_(c.adjustment_ids)
            )
        ):
            adj.invoiced_at = now
    if c.coupon_used:
        sub.coupon_periods_used += 1
    if finalize_at <= now:
        finalize(session, invoice, now, clock, lines=c.lines)
    elif finalize_by is not None and finalize_at <= finalize_by:
        finalize(session, invoice, finalize_by, clock, lines=c.lines)
    return invoice


def _lateness(session: Session, org_id: str, version: PlanVersion) -> timedelta:
    meter_ids = {charge["meter"] for charge in version.charges}
    if not meter_ids:
        return timedelta(0)
    seconds = session.scalars(
        select(Meter.lateness_seconds).where(Meter.org_id == org_id, Meter.id.in_(meter_ids))
    ).all()
    return timedelta(seconds=max(seconds, default=0))


def _insert_draft(
    session: Session, org: Organization, customer_id: str, currency: str,
    lines: Sequence[compose.Line], decision: tax.TaxDecision, now: datetime, clock: Clock, *,
    subscription_id: str | None, billing_key: str | None,
    period: tuple[datetime, datetime] | None, issued_at: datetime, finalize_at: datetime | None,
    plan_id: str | None = None, plan_version: int | None = None, quantity: int = 1,
    coupon_id: str | None = None, locale: str | None = None,
    metadata: dict[str, str] | None = None, payment_terms_days: int | None = None,
) -> Invoice | None:  # fmt: skip
    invoice_id = new_id("inv")
    values: dict[str, Any] = dict(
        org_id=org.id, id=invoice_id, customer_id=customer_id,
        subscription_id=subscription_id, billing_key=billing_key, status="draft",
        currency=currency, period_start=period[0] if period else None,
        period_end=period[1] if period else None, plan_id=plan_id, plan_version=plan_version,
        quantity=quantity, coupon_id=coupon_id, tax_category=decision.category,
        tax_rate=decision.rate, subtotal=0, discount=0, tax_total=0, total=0,
        credit_applied=0, amount_paid=0, amount_credited=0, amount_written_off=0,
        amount_refunded=0, amount_due=0, tax=[], notes=[decision.note] if decision.note else [],
        locale=locale or "en",
        payment_terms_days=org.payment_terms_days if payment_terms_days is None
        else payment_terms_days,
        issued_at=issued_at, finalize_at=finalize_at, metadata=metadata or {},
        created_at=clock.now(), updated_at=clock.now(),
    )  # fmt: skip
    inserted = session.execute(
        insert(Invoice.__table__)  # type: ignore[arg-type]
        .values(**values)
        .on_conflict_do_nothing(index_elements=["org_id", "billing_key"])
        .returning(Invoice.__table__.c.id)
    ).scalar()
    if inserted is None:
        return None
    session.info["invoices_issued"] = session.info.get("invoices_issued", 0) + 1
    invoice = load(session, org.id, invoice_id)
    _write_lines(session, invoice, lines)
    _totals(session, invoice, lines)
    events.record(session, clock, org.id, "invoice.created", _event(invoice), now)
    return invoice


def _write_lines(session: Session, invoice: Invoice, lines: Sequence[compose.Line]) -> None:
    ids = new_ids("il", len(lines))
    for position, (line_id, line) in enumerate(zip(ids, lines, strict=True), start=1):
        session.add(
            InvoiceLine(
                org_id=invoice.org_id, id=line_id, invoice_id=invoice.id, position=position,
                kind=line.kind, description=line.description[:500], quantity=line.quantity,
                unit_amount=line.unit_amount, amount=line.amount, meter_id=line.meter,
                period_start=line.period_start, period_end=line.period_end,
                event_ids=line.event_ids, adjustment_id=line.adjustment_id,
                revenue_account=line.account,
            )
        )  # fmt: skip
    session.flush()


def _totals(session: Session, invoice: Invoice, lines: Sequence[compose.Line]) -> None:
    decision = _decision(invoice)
    rows = compose.tax_rows(decision, list(lines))
    invoice.subtotal = sum(line.amount for line in lines if line.kind != "discount")
    invoice.discount = -sum(line.amount for line in lines if line.kind == "discount")
    invoice.tax = [
        {"category": r.category, "rate": str(r.rate), "taxable_amount": r.taxable_amount,
         "amount": r.amount}
        for r in rows
    ]  # fmt: skip
    invoice.tax_total = sum(r.amount for r in rows)
    invoice.total = invoice.subtotal - invoice.discount + invoice.tax_total
    invoice.amount_due = max(invoice.total, 0)


def _decision(invoice: Invoice) -> tax.TaxDecision:
    note = invoice.notes[0] if invoice.notes else None
    return tax.TaxDecision(invoice.tax_category, Decimal(invoice.tax_rate), None, note)


def create_one_off(
    session: Session, org_id: str, customer_id: str, currency: str,
    items: Sequence[tuple[str, Decimal, Decimal]], due_days: int | None, now: datetime,
    clock: Clock, *, locale: str | None, metadata: dict[str, str] | None, auto_finalize: bool,
) -> Invoice:  # fmt: skip
    """A one-off invoice: (description, quantity, unit amount in minor units) lines."""
    from kassa.core.money import multiply, round_minor
    from kassa.customers import service as customers

    org = orgs.load(session, org_id)
    customer = customers.resolve_active(session, org_id, customer_id)
    lines = [
        compose.Line(
            kind="one_off", description=description, quantity=quantity,
            unit_amount=unit_amount, amount=round_minor(multiply(unit_amount, quantity)),
            account=postings.revenue("one_off"),
        )
        for description, quantity, unit_amount in items
    ]  # fmt: skip
    decision = compose.tax_decision(session, org_id, customer, now)
    grace = timedelta(seconds=org.invoice_grace_seconds)
    invoice = _insert_draft(
        session, org, customer.id, currency, lines, decision, now, clock,
        subscription_id=None, billing_key=None, period=None, issued_at=now,
        finalize_at=now if auto_finalize else now + grace, locale=customer.locale,
        metadata=metadata, payment_terms_days=due_days,
    )  # fmt: skip
    assert invoice is not None
    if auto_finalize or grace.total_seconds() == 0:
        finalize(session, invoice, now, clock)
    return invoice


# --- finalizing ------------------------------------------------------------------------


def next_number(session: Session, org_id: str, kind: str) -> int:
    """The next number of ``kind`` for the org: the counter row stays locked until the
    transaction ends, so concurrent finalizations queue and a rollback leaves no gap."""
    return int(
        session.execute(
            text(
                "INSERT INTO document_counters AS c (org_id, kind, last) VALUES (:org, :kind, 1)"
                " ON CONFLICT (org_id, kind) DO UPDATE SET last = c.last + 1 RETURNING last"
            ),
            {"org": org_id, "kind": kind},
        ).scalar_one()
    )


def document_number(prefix: str, sequence: int) -> str:
    """``PREFIX-000042``, wider than six digits as needed (in SQL: ``kassa_document_number``,
    migration 0010, for rows numbered by the statement that inserts them)."""
    return f"{prefix}-{sequence:06d}"


def next_numbers(session: Session, org_id: str, kind: str, count: int) -> int:
    """``next_number`` for ``count`` documents at once: returns the first of the
    ``count`` consecutive numbers now taken (the counter row stays locked likewise)."""
    last = session.execute(
        text(
            "INSERT INTO document_counters AS c (org_id, kind, last) VALUES (:org, :kind, :n)"
            " ON CONFLICT (org_id, kind) DO UPDATE SET last = c.last + :n RETURNING last"
        ),
        {"org": org_id, "kind": kind, "n": count},
    ).scalar_one()
    return int(last) - count + 1


def refresh_usage(session: Session, invoice: Invoice) -> None:
    """Re-rate a draft's usage for its period (late events that arrived within the meters'
    lateness count), then its discount and totals."""
    if invoice.plan_id is None or invoice.period_start is None or invoice.period_end is None:
        return
    lines = list(lines_of(session, invoice))
    old_usage = [line for line in lines if line.kind == "usage" and line.adjustment_id is None]
    if not old_usage:
        return
    plan = plans.resolve(session, invoice.org_id, invoice.plan_id)
    version = plans.version_of(session, plan, invoice.plan_version)
    period = (invoice.period_start, invoice.period_end)
    usage = compose.usage_of(session, invoice.org_id, invoice.customer_id, plan, version, *period)
    fresh = compose.usage_lines(session, plan, version, period, usage)
    if [(x.description, x.amount) for x in fresh] == [(x.description, x.amount) for x in old_usage]:
        return
    kept = [_as_compose(line) for line in lines if line not in old_usage]
    others = [line for line in kept if line.kind != "discount"]
    first_usage = next(i for i, line in enumerate(lines) if line in old_usage)
    merged = others[:first_usage] + fresh + others[first_usage:]
    if invoice.coupon_id is not None:
        coupon = coupons.resolve(session, invoice.org_id, invoice.coupon_id)
        discount = compose.discount_line(coupon, merged, period)
        if discount.amount:
            merged.append(discount)
    session.execute(
        delete(InvoiceLine).where(
            InvoiceLine.org_id == invoice.org_id, InvoiceLine.invoice_id == invoice.id
        )
    )
    _write_lines(session, invoice, merged)
    _totals(session, invoice, merged)


def _as_compose(line: InvoiceLine) -> compose.Line:
    return compose.Line(
        kind=line.kind,  # type: ignore[arg-type]
        description=line.description, quantity=line.quantity, unit_amount=line.unit_amount,
        amount=line.amount, account=line.revenue_account, period_start=line.period_start,
        period_end=line.period_end, meter=line.meter_id, event_ids=line.event_ids,
        adjustment_id=line.adjustment_id,
    )  # fmt: skip


def finalize(
    session: Session, invoice: Invoice, now: datetime, clock: Clock, *,
    lines: Sequence[compose.Line] | None = None,
) -> Invoice:  # fmt: skip
    """Number it, freeze it, record it in the ledger and settle it with customer credit.
    ``lines``: the draft's lines as just written, in the transaction that composed them
    from the usage it read (nothing to re-rate, nothing to re-read)."""
    if invoice.status != "draft":
        raise InvalidInvoiceState(detail=f"Invoice {invoice.id} is {invoice.status}.")
    if lines is None:
        refresh_usage(session, invoice)
    org = orgs.load(session, invoice.org_id)
    from kassa.customers import service as customers

    customer = customers.resolve(session, invoice.org_id, invoice.customer_id)
    sequence = next_number(session, invoice.org_id, "invoice")
    invoice.sequence = sequence
    invoice.number = document_number(org.invoice_prefix, sequence)
    invoice.status = "open"
    session.info["invoices_finalized"] = session.info.get("invoices_finalized", 0) + 1
    invoice.finalized_at = now
    invoice.due_at = now + timedelta(days=invoice.payment_terms_days)
    invoice.seller = seller_of(org)
    invoice.buyer = buyer_of(customer)
    invoice.locale = customer.locale or invoice.locale
    invoice.updated_at = clock.now()
    session.flush()
    if lines is None:
        sales = [postings.SaleLine(x.revenue_account, x.amount) for x in lines_of(session, invoice)]
    else:
        sales = [postings.SaleLine(x.account, x.amount) for x in lines]
    ledger.post(
        session, invoice.org_id, kind="invoice_finalized", source_type="invoice",
        source_id=invoice.id, key=f"invoice_finalized:{invoice.id}", currency=invoice.currency,
        occurred_at=now,
        postings=postings.invoice_finalized(
            invoice.customer_id, invoice.id, sales,
            [postings.TaxAmount(t["category"], Decimal(t["rate"]), t["amount"])
             for t in invoice.tax],
        ),
        customer_id=invoice.customer_id, clock=clock,
    )  # fmt: skip
    events.record(session, clock, invoice.org_id, "invoice.finalized", _event(invoice), now)
    _apply_credit(session, invoice, now, clock)
    if invoice.amount_due == 0:
        _mark_paid(session, invoice, now, clock)
    session.flush()
    return invoice


def _apply_credit(session: Session, invoice: Invoice, now: datetime, clock: Clock) -> None:
    if invoice.amount_due <= 0:
        return
    available = ledger.customer_credit(
        session, invoice.org_id, invoice.customer_id, invoice.currency
    )
    applied = min(available, invoice.amount_due)
    if applied <= 0:
        return
    ledger.post(
        session, invoice.org_id, kind="credit_applied", source_type="invoice",
        source_id=invoice.id, key=f"credit_applied:{invoice.id}", currency=invoice.currency,
        occurred_at=now,
        postings=postings.credit_applied(invoice.customer_id, invoice.id, applied),
        customer_id=invoice.customer_id, clock=clock,
    )  # fmt: skip
    invoice.credit_applied = applied
    invoice.amount_due -= applied


def _mark_paid(session: Session, invoice: Invoice, now: datetime, clock: Clock) -> None:
    invoice.status = "paid"
    invoice.paid_at = now
    invoice.updated_at = clock.now()
    events.record(session, clock, invoice.org_id, "invoice.paid", _event(invoice), now)


# --- settling --------------------------------------------------------------------------


def void(session: Session, invoice: Invoice, now: datetime, clock: Clock) -> Invoice:
    """Cancel an open invoice nobody paid or credited: every ledger effect is reversed
    (applied customer credit goes back to the customer)."""
    if invoice.status != "open":
        raise InvalidInvoiceState(detail=f"Only an open invoice can be voided ({invoice.status}).")
    if invoice.amount_paid or invoice.amount_credited:
        raise InvalidInvoiceState(
            detail="The invoice has payments or credit notes; credit it instead."
        )
    lines = lines_of(session, invoice)
    effects = postings.invoice_finalized(
        invoice.customer_id, invoice.id,
        [postings.SaleLine(line.revenue_account, line.amount) for line in lines],
        [postings.TaxAmount(t["category"], Decimal(t["rate"]), t["amount"]) for t in invoice.tax],
    )  # fmt: skip
    if invoice.credit_applied:
        effects += postings.credit_applied(invoice.customer_id, invoice.id, invoice.credit_applied)
    ledger.post(
        session, invoice.org_id, kind="invoice_voided", source_type="invoice",
        source_id=invoice.id, key=f"invoice_voided:{invoice.id}", currency=invoice.currency,
        occurred_at=now, postings=postings.reverse(effects), customer_id=invoice.customer_id,
        clock=clock,
    )  # fmt: skip
    invoice.status = "void"
    invoice.amount_due = 0
    invoice.voided_at = now
    invoice.updated_at = clock.now()
    session.flush()
    events.record(session, clock, invoice.org_id, "invoice.voided", _event(invoice), now)
    return invoice


def mark_uncollectible(session: Session, invoice: Invoice, now: datetime, clock: Clock) -> Invoice:
    """Write off what is still due (the receivable goes to the write-offs account)."""
    if invoice.status != "open":
        raise InvalidInvoiceState(
            detail=f"Only an open invoice can be marked uncollectible ({invoice.status})."
        )
    amount = invoice.amount_due
    ledger.post(
        session, invoice.org_id, kind="write_off", source_type="invoice", source_id=invoice.id,
        key=f"write_off:{invoice.id}", currency=invoice.currency, occurred_at=now,
        postings=postings.write_off(invoice.customer_id, invoice.id, amount),
        customer_id=invoice.customer_id, clock=clock,
    )  # fmt: skip
    invoice.status = "uncollectible"
    invoice.amount_written_off = amount
    invoice.amount_due = 0
    invoice.marked_uncollectible_at = now
    invoice.updated_at = clock.now()
    session.flush()
    events.record(
        session, clock, invoice.org_id, "invoice.marked_uncollectible", _event(invoice), now
    )
    return invoice


def record_payment(
    session: Session, invoice: Invoice, amount: int, via: str, key: str, now: datetime,
    clock: Clock,
) -> Invoice:  # fmt: skip
    """Money received for an open invoice (at most what is due). ``key`` names the payment
    (a PSP payment id, or the request's idempotency) so it is recorded once."""
    if invoice.status != "open":
        raise InvalidInvoiceState(detail=f"Only an open invoice can be paid ({invoice.status}).")
    if not 0 < amount <= invoice.amount_due:
        raise InvalidInvoiceState(
            detail=f"The amount must be between 1 and the amount due ({invoice.amount_due})."
        )
    recorded = ledger.post(
        session, invoice.org_id, kind="payment", source_type="payment", source_id=invoice.id,
        key=f"payment:{key}", currency=invoice.currency, occurred_at=now,
        postings=postings.payment(invoice.customer_id, invoice.id, amount, via),
        customer_id=invoice.customer_id, clock=clock,
    )  # fmt: skip
    if recorded is None:
        return invoice
    invoice.amount_paid += amount
    invoice.amount_due -= amount
    invoice.updated_at = clock.now()
    if invoice.amount_due == 0:
        _mark_paid(session, invoice, now, clock)
    session.flush()
    return invoice


def record_refund(
    session: Session, invoice: Invoice, amount: int, via: str, key: str, now: datetime,
    clock: Clock,
) -> Invoice:  # fmt: skip
    """Money paid back on an invoice's payments: it uses the customer's credit (from credit
    notes) first; the rest is booked as a refund expense. Never more than was paid."""
    if not 0 < amount <= invoice.amount_paid - invoice.amount_refunded:
        raise InvalidInvoiceState(
            detail="The refund must be between 1 and what was paid and not yet refunded "
            f"({invoice.amount_paid - invoice.amount_refunded})."
        )
    credit = ledger.customer_credit(session, invoice.org_id, invoice.customer_id, invoice.currency)
    recorded = ledger.post(
        session, invoice.org_id, kind="refund", source_type="refund", source_id=invoice.id,
        key=f"refund:{key}", currency=invoice.currency, occurred_at=now,
        postings=postings.refund(invoice.customer_id, amount, max(0, min(credit, amount)), via),
        customer_id=invoice.customer_id, clock=clock,
    )  # fmt: skip
    if recorded is not None:
        invoice.amount_refunded += amount
        invoice.updated_at = clock.now()
        session.flush()
    return invoice


def _event(invoice: Invoice) -> dict[str, Any]:
    return event_data(
        invoice.id, invoice.number, invoice.customer_id, invoice.subscription_id,
        invoice.status, invoice.currency, invoice.total, invoice.amount_due,
    )  # fmt: skip


def event_data(
    invoice_id: str, number: str | None, customer_id: str, subscription_id: str | None,
    status: str, currency: str, total: int, amount_due: int,
) -> dict[str, Any]:  # fmt: skip
    """The payload of an invoice's domain events."""
    return {
        "id": invoice_id, "object": "invoice", "number": number, "customer": customer_id,
        "subscription": subscription_id, "status": status, "currency": currency,
        "total": total, "amount_due": amount_due,
    }  # fmt: skip


class Buyer(Protocol):
    """What the buyer snapshot reads of a customer (a ``Customer`` or a plain row)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def external_id(self) -> str | None: ...
    @property
    def address(self) -> dict[str, Any] | None: ...
    @property
    def tax_id(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...
    @property
    def timezone(self) -> str | None: ...
    @property
    def buyer_reference(self) -> str | None: ...


def seller_of(org: Organization) -> dict[str, Any]:
    """The seller block a finalized invoice keeps."""
    return {
        "name": org.name, "address": org.address or {"country": org.country},
        "tax_id": org.tax_id, "email": org.email,
        "payment_instructions": org.payment_instructions,
        # what the issued documents show, as issued: the account to pay to, the time zone
        # their dates are in (the customer's, else this one)
        "iban": org.iban, "bic": org.bic, "timezone": org.timezone,
    }  # fmt: skip


def buyer_of(customer: Buyer) -> dict[str, Any]:
    """The buyer block a finalized invoice keeps."""
    return {
        "name": customer.name or customer.external_id or customer.id,
        "address": customer.address or {}, "tax_id": customer.tax_id, "email": customer.email,
        "timezone": customer.timezone, "buyer_reference": customer.buyer_reference,
    }  # fmt: skip
