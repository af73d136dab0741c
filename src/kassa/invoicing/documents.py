"""Invoices and credit notes as documents: the PDF (rendered once, stored as a file under
the documents directory, served from there) and the EN 16931 UBL XML (rendered on demand:
it is small and derived entirely from immutable rows)."""

from __future__ import annotations

import os
import tempfile
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from kassa.core.money import exponent
from kassa.documents import model
from kassa.invoicing import service
from kassa.invoicing.models import CreditNote, Invoice

_KEYS = {"line1", "line2", "city", "postal_code", "region", "state", "country"}


def _party(data: dict[str, Any] | None) -> model.Party:
    data = data or {}
    return model.Party(
        name=str(data.get("name") or ""),
        address={
            ("state" if k == "region" else k): str(v)
            for k, v in (data.get("address") or {}).items()
            if v and k in _KEYS
        },
        tax_id=data.get("tax_id"),
        email=data.get("email"),
    )


def _day(value: datetime | None, tz: ZoneInfo) -> date | None:
    """The calendar day of an instant where the customer lives."""
    return value.astimezone(tz).date() if value is not None else None


def _span(
    start: datetime | None, end: datetime | None, tz: ZoneInfo
) -> tuple[date | None, date | None]:
    """A half-open period [start, end) as EN 16931 dates: first and last day (inclusive)."""
    first = _day(start, tz)
    last = _day(end - timedelta(microseconds=1), tz) if end is not None else None
    if first is not None and last is not None and last < first:
        last = first
    return first, last


def _zone(session: Session, org_id: str, customer_id: str) -> ZoneInfo:
    from kassa.customers import service as customers
    from kassa.orgs import service as orgs

    customer = customers.resolve(session, org_id, customer_id)
    return ZoneInfo(customer.timezone or orgs.load(session, org_id).timezone)


def _rows(rows: list[dict[str, Any]]) -> list[model.TaxRow]:
    return [
        model.TaxRow(
            category=r["category"],
            rate=Decimal(r["rate"]),
            taxable_amount=r["taxable_amount"],
            amount=r["amount"],
        )  # fmt: skip
        for r in rows
    ]


def invoice_document(session: Session, invoice: Invoice) -> model.Document:
    if invoice.number is None or invoice.finalized_at is None:
        raise service.InvalidInvoiceState(detail="A draft has no document yet; finalize it.")
    scale = Decimal(10) ** exponent(invoice.currency)
    tz = _zone(session, invoice.org_id, invoice.customer_id)
    lines = [
        model.Line(
            # a line priced as a whole (tiers, packages, percentages) is one unit at its amount
            description=line.description,
            quantity=line.quantity if line.unit_amount is not None else Decimal(1),
            unit_amount=(line.unit_amount if line.unit_amount is not None
                         else Decimal(line.amount)) / scale,
            amount=line.amount, period_start=_span(line.period_start, line.period_end, tz)[0],
            period_end=_span(line.period_start, line.period_end, tz)[1],
            tax_category=invoice.tax_category,
            tax_rate=Decimal(invoice.tax_rate),
        )
        for line in service.lines_of(session, invoice)
    ]  # fmt: skip
    seller = invoice.seller or {}
    return model.Document(
        kind="invoice", number=invoice.number,
        issue_date=invoice.finalized_at.astimezone(tz).date(),
        due_date=_day(invoice.due_at, tz), currency=invoice.currency, locale=invoice.locale,
        seller=_party(seller), buyer=_party(invoice.buyer), lines=lines,
        taxes=_rows(invoice.tax), subtotal=invoice.subtotal, discount=invoice.discount,
        tax_total=invoice.tax_total, total=invoice.total, amount_paid=invoice.amount_paid,
        amount_due=invoice.amount_due, notes=list(invoice.notes),
        payment_instructions=seller.get("payment_instructions"),
        period_start=_span(invoice.period_start, invoice.period_end, tz)[0],
        period_end=_span(invoice.period_start, invoice.period_end, tz)[1],
        billing_reference=None, credit_applied=invoice.credit_applied,
    )  # fmt: skip


def credit_note_document(session: Session, note: CreditNote) -> model.Document:
    invoice = service.load(session, note.org_id, note.invoice_id)
    tz = _zone(session, note.org_id, note.customer_id)
    lines = [
        model.Line(
            description=item["description"], quantity=Decimal(1),
            unit_amount=Decimal(item["amount"]) / Decimal(10) ** exponent(note.currency),
            amount=item["amount"], period_start=None, period_end=None,
            tax_category=item["tax_category"], tax_rate=Decimal(item["tax_rate"]),
        )
        for item in note.lines
    ]  # fmt: skip
    return model.Document(
        kind="credit_note", number=note.number, issue_date=note.issued_at.astimezone(tz).date(),
        due_date=None, currency=note.currency, locale=invoice.locale,
        seller=_party(invoice.seller), buyer=_party(invoice.buyer), lines=lines,
        taxes=_rows(note.tax), subtotal=note.subtotal, discount=0, tax_total=note.tax_total,
        total=note.total, amount_paid=0, amount_due=0,
        notes=[n for n in [note.memo, *invoice.notes] if n], payment_instructions=None,
        period_start=_span(invoice.period_start, invoice.period_end, tz)[0],
        period_end=_span(invoice.period_start, invoice.period_end, tz)[1],
        billing_reference=invoice.number,
    )  # fmt: skip


def stored_pdf(root: Path, org_id: str, object_id: str, render: Any) -> Path:
    """The document's PDF file, rendered and written once (atomically: a crash leaves no
    half file, and two renders racing both write the same bytes)."""
    path = root / org_id / f"{object_id}.pdf"
    if path.exists():
        return path
    from kassa.documents import pdf

    data = pdf.render_pdf(render())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def ubl(document: model.Document) -> bytes:
    from kassa.documents import ubl as ubl_xml

    return ubl_xml.render_ubl(document)
