"""Credit notes: a correction of a finalized invoice, by amount (tax included, split over
the invoice's tax rates pro rata) or by lines (net amounts, taxed like the invoice). On an
open invoice they reduce what is due; what exceeds it (the invoice was paid) becomes
customer credit that the next invoices use. Never more than what was invoiced."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.errors import FieldError, NotFound, ValidationFailed
from kassa.core.ids import new_id
from kassa.core.money import allocate, round_minor
from kassa.events import service as events
from kassa.invoicing import service
from kassa.invoicing.models import CreditNote, Invoice, InvoiceLine
from kassa.invoicing.schemas import CreditNoteIn
from kassa.ledger import postings
from kassa.ledger import service as ledger
from kassa.orgs import service as orgs
from kassa.tax import rules as tax


class CreditNoteNotFound(NotFound):
    code = "credit_note_not_found"
    title = "Credit note not found"


def load(session: Session, org_id: str, note_id: str) -> CreditNote:
    note = session.scalars(
        select(CreditNote).where(CreditNote.org_id == org_id, CreditNote.id == note_id)
    ).one_or_none()
    if note is None:
        raise CreditNoteNotFound(detail=f"No credit note {note_id!r}.")
    return note


def of_invoice(session: Session, invoice: Invoice) -> Sequence[CreditNote]:
    return session.scalars(
        select(CreditNote)
        .where(CreditNote.org_id == invoice.org_id, CreditNote.invoice_id == invoice.id)
        .order_by(CreditNote.id)
    ).all()


def _fail(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(detail=message, errors=[FieldError(field, message)])


def create(
    session: Session, org_id: str, data: CreditNoteIn, now: datetime, clock: Clock
) -> CreditNote:
    try:
        invoice = service.load(session, org_id, data.invoice, lock=True)
    except service.InvoiceNotFound:
        raise _fail("invoice", "no such invoice") from None
    if invoice.status not in ("open", "paid"):
        raise service.InvalidInvoiceState(
            detail=f"Only an open or paid invoice can be credited ({invoice.status})."
        )
    previous = of_invoice(session, invoice)
    creditable = invoice.total - sum(n.total for n in previous)
    decision = service._decision(invoice)
    lines = service.lines_of(session, invoice)
    if data.lines is not None:
        items = _by_lines(data, lines, previous)
        rows = tax.compute_tax([(decision, item["amount"]) for item in items])
    else:
        assert data.amount is not None
        if data.amount > creditable:
            raise _fail("amount", f"at most {creditable} is left to credit on this invoice")
        items, rows = _by_amount(data.amount, invoice, lines, decision)
    subtotal = sum(item["amount"] for item in items)
    tax_total = sum(r.amount for r in rows)
    total = subtotal + tax_total
    if total <= 0:
        raise _fail("lines" if data.lines else "amount", "the credit note must credit something")
    if total > creditable:
        raise _fail(
            "lines" if data.lines else "amount",
            f"at most {creditable} is left to credit on this invoice (this is {total})",
        )
    to_invoice = min(total, invoice.amount_due) if invoice.status == "open" else 0
    org = orgs.load(session, org_id)
    sequence = service.next_number(session, org_id, "credit_note")
    number = service.document_number(f"{org.invoice_prefix}-CN", sequence)
    note = CreditNote(
        org_id=org_id, id=new_id("cn"), number=number,
        invoice_id=invoice.id, customer_id=invoice.customer_id, currency=invoice.currency,
        reason=data.reason, memo=data.memo,
        lines=[{k: v for k, v in item.items() if k != "account"} | {
            "tax_category": decision.category, "tax_rate": str(decision.rate)} for item in items],
        subtotal=subtotal,
        tax=[{"category": r.category, "rate": str(r.rate), "taxable_amount": r.taxable_amount,
              "amount": r.amount} for r in rows],
        tax_total=tax_total, total=total, to_invoice=to_invoice, to_credit=total - to_invoice,
        issued_at=now, created_at=clock.now(),
    )  # fmt: skip
    session.add(note)
    session.flush()
    ledger.post(
        session, org_id, kind="credit_note", source_type="credit_note", source_id=note.id,
        key=f"credit_note:{note.id}", currency=invoice.currency, occurred_at=now,
        postings=postings.credit_note(
            invoice.customer_id, invoice.id,
            [postings.SaleLine(item["account"], item["amount"]) for item in items],
            [postings.TaxAmount(r.category, r.rate, r.amount) for r in rows],
            to_invoice, total - to_invoice,
        ),
        customer_id=invoice.customer_id, clock=clock,
    )  # fmt: skip
    invoice.amount_credited += to_invoice
    invoice.amount_due -= to_invoice
    invoice.updated_at = clock.now()
    if invoice.status == "open" and invoice.amount_due == 0:
        service._mark_paid(session, invoice, now, clock)
    session.flush()
    events.record(session, clock, org_id, "credit_note.created", {
        "id": note.id, "object": "credit_note", "number": note.number, "invoice": invoice.id,
        "total": total,
    }, now)  # fmt: skip
    return note


def _by_lines(
    data: CreditNoteIn, lines: Sequence[InvoiceLine], previous: Sequence[CreditNote]
) -> list[dict[str, Any]]:
    assert data.lines is not None
    by_id = {line.id: line for line in lines}
    credited: dict[str, int] = defaultdict(int)
    for note in previous:
        for item in note.lines:
            if item.get("invoice_line"):
                credited[item["invoice_line"]] += item["amount"]
    items = []
    for i, wanted in enumerate(data.lines):
        line = by_id.get(wanted.line)
        if line is None or line.amount <= 0:
            raise _fail(f"lines[{i}].line", "no creditable line with this id on the invoice")
        left = line.amount - credited[line.id]
        amount = wanted.amount if wanted.amount is not None else left
        if not 0 < amount <= left:
            raise _fail(f"lines[{i}].amount", f"at most {left} is left to credit on this line")
        credited[line.id] += amount
        items.append({"invoice_line": line.id, "description": line.description,
                      "amount": amount, "account": line.revenue_account})  # fmt: skip
    return items


def _by_amount(
    gross: int, invoice: Invoice, lines: Sequence[InvoiceLine], decision: tax.TaxDecision
) -> tuple[list[dict[str, Any]], list[tax.TaxLine]]:
    """Gross → net and tax at the invoice's rate; the net spread over the invoice's revenue
    accounts in proportion to what each was credited on the invoice."""
    net = round_minor(Decimal(gross) * 100 / (100 + decision.rate))
    tax_amount = gross - net
    weights: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.amount > 0 and line.kind != "discount":
            weights[line.revenue_account] += line.amount
    accounts = sorted(weights) or [postings.revenue("one_off")]
    shares = allocate(net, [weights[a] for a in accounts]) if weights else [net]
    items = [
        {"invoice_line": None, "description": "Credit", "amount": share, "account": account}
        for account, share in zip(accounts, shares, strict=True)
        if share
    ]
    row = tax.TaxLine(decision.category, decision.rate, net, tax_amount)
    return items, [row] if net or tax_amount else []
