"""Invoices and credit notes as documents: the PDF (rendered once, stored as a file under
the documents directory, served from there) and the EN 16931 UBL XML (rendered on demand:
it is small and derived entirely from immutable rows).

A finalized invoice's documents show it **as issued**, whenever they are rendered: only what
was fixed at finalization goes in (its lines, totals, tax rows, the seller and buyer blocks
with their time zones, bank account and buyer reference, the customer credit applied then).
Later payments, credit notes and write-offs change the invoice's settlement fields in the API,
the customer statement and the credit notes' own documents, never the invoice's documents.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from kassa.catalog import meters, plans
from kassa.core.errors import Conflict, FieldError, NotFound
from kassa.core.money import exponent
from kassa.documents import model
from kassa.documents import ubl as ubl_xml
from kassa.invoicing import service
from kassa.invoicing.models import CreditNote, Invoice, InvoiceLine
from kassa.pricing import rules as pricing_rules

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
        tax_id=data.get("tax_id") or None,
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


def _zone(session: Session, org_id: str, customer_id: str, invoice: Invoice) -> ZoneInfo:
    """The customer's time zone when the invoice was finalized (kept in its buyer and seller
    blocks; invoices finalized before those kept it use today's)."""
    buyer, seller = invoice.buyer or {}, invoice.seller or {}
    if "timezone" in buyer and seller.get("timezone"):
        return ZoneInfo(buyer["timezone"] or seller["timezone"])
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
        )
        for r in rows
    ]


def invoice_document(session: Session, invoice: Invoice) -> model.Document:
    """The finalized invoice as issued (see the module docstring)."""
    if invoice.number is None or invoice.finalized_at is None:
        raise service.InvalidInvoiceState(detail="A draft has no document yet; finalize it.")
    tz = _zone(session, invoice.org_id, invoice.customer_id, invoice)
    lines = service.lines_of(session, invoice)
    usage = _usage_pricing(session, invoice, lines)
    seller = invoice.seller or {}
    return model.Document(
        kind="invoice",
        number=invoice.number,
        issue_date=invoice.finalized_at.astimezone(tz).date(),
        due_date=_day(invoice.due_at, tz),
        currency=invoice.currency,
        locale=invoice.locale,
        seller=_party(seller),
        buyer=_party(invoice.buyer),
        lines=[_line(invoice, line, tz, usage.get(line.id)) for line in lines],
        taxes=_rows(invoice.tax),
        subtotal=invoice.subtotal,
        discount=invoice.discount,
        tax_total=invoice.tax_total,
        total=invoice.total,
        # as issued: the customer credit applied at finalization, no later settlement
        amount_paid=0,
        credit_applied=invoice.credit_applied,
        amount_due=invoice.total - invoice.credit_applied,
        notes=list(invoice.notes),
        payment_instructions=seller.get("payment_instructions"),
        payment_account=seller.get("iban"),
        payment_bic=seller.get("bic"),
        buyer_reference=(invoice.buyer or {}).get("buyer_reference"),
        period_start=_span(invoice.period_start, invoice.period_end, tz)[0],
        period_end=_span(invoice.period_start, invoice.period_end, tz)[1],
        billing_reference=None,
    )


def _line(
    invoice: Invoice, line: InvoiceLine, tz: ZoneInfo, usage: tuple[str | None, str | None] | None
) -> model.Line:
    digits = exponent(invoice.currency)
    start, end = _span(line.period_start, line.period_end, tz)
    unit, pricing = usage or (None, None)
    quantity, base = line.quantity, None
    if line.unit_amount is not None:
        price = line.unit_amount / Decimal(10) ** digits
    else:
        # priced as a whole (tiers, packages, percentages): the quantity used stays, the price
        # is that of all of it (base quantity = quantity), or one unit at the amount
        price = Decimal(line.amount).scaleb(-digits)
        if quantity:
            price, base = price * (1 if quantity > 0 else -1), abs(quantity)
        else:
            quantity = Decimal(1)
    return model.Line(
        description=line.description,
        quantity=quantity,
        unit_amount=price,
        amount=line.amount,
        period_start=start,
        period_end=end,
        tax_category=invoice.tax_category,
        tax_rate=Decimal(invoice.tax_rate),
        base_quantity=base,
        unit=unit,
        pricing=pricing,
    )


def _usage_pricing(
    session: Session, invoice: Invoice, lines: Sequence[InvoiceLine]
) -> dict[str, tuple[str | None, str | None]]:
    """For each usage line: the meter's unit and, for tiered and package prices, how the
    quantity was priced ("100 × €0.125 + 404 × €0.0975 + €3.00"), from the plan version the
    invoice was billed on (plan versions never change)."""
    usage = [line for line in lines if line.kind == "usage" and line.meter_id]
    if not usage:
        return {}
    units = {
        m.id: m.unit
        for m in meters.by_ids(
            session, invoice.org_id, [line.meter_id for line in usage if line.meter_id]
        ).values()
    }
    charges: dict[str, pricing_rules.Charge] = {}
    if invoice.plan_id is not None:
        try:
            plan = plans.resolve(session, invoice.org_id, invoice.plan_id)
            version = plans.version_of(session, plan, invoice.plan_version)
            charges = {c.meter: c for c in plans.pricing(session, plan, version).charges}
        except NotFound:
            charges = {}
    out: dict[str, tuple[str | None, str | None]] = {}
    for line in usage:
        assert line.meter_id is not None
        charge = charges.get(line.meter_id)
        text = None
        if charge is not None and line.adjustment_id is None:
            try:
                text = describe(charge, line.quantity, invoice.currency, invoice.locale)
            except (ArithmeticError, ValueError):  # a nicety for people: never a failure
                text = None
        out[line.id] = (units.get(line.meter_id), text)
    return out


def describe(
    charge: pricing_rules.Charge, quantity: Decimal, currency: str, locale: str
) -> str | None:
    """How ``quantity`` units were priced by a tiered or package charge, for people."""
    from babel.numbers import format_currency, format_decimal

    props = charge.properties
    code, where = currency.upper(), locale.replace("-", "_")

    def price(minor: Decimal) -> str:
        major = minor / Decimal(10) ** exponent(currency)
        return format_currency(major, code, locale=where, decimal_quantization=False)

    def count(value: Decimal) -> str:
        return format_decimal(value, locale=where, decimal_quantization=False)

    if isinstance(props, pricing_rules.Graduated | pricing_rules.Volume):
        result = pricing_rules.rate_charge(charge, pricing_rules.Usage(units=quantity))
        parts = []
        for tier in result.tiers:
            part = f"{count(tier.units)} × {price(tier.unit_amount)}"
            if tier.flat_amount:
                part += f" + {price(Decimal(tier.flat_amount))}"
            parts.append(part)
        kind = "graduated" if isinstance(props, pricing_rules.Graduated) else "volume"
        text = f"{kind}: {' + '.join(parts)}" if parts else None
    elif isinstance(props, pricing_rules.Package):
        billable = max(quantity - props.free_units, Decimal(0))
        packages, rest = divmod(billable, Decimal(props.package_size))
        packages += 1 if rest else 0
        text = (
            f"package: {count(packages)} × {count(Decimal(props.package_size))} "
            f"at {price(Decimal(props.package_amount))}"
        )
        if props.free_units:
            text += f" ({count(Decimal(props.free_units))} free)"
    else:
        return None
    if text and charge.min_amount is not None:
        result = pricing_rules.rate_charge(charge, pricing_rules.Usage(units=quantity))
        if result.minimum_applied:
            text += f"; minimum {price(Decimal(charge.min_amount))}"
    return text


def credit_note_document(session: Session, note: CreditNote) -> model.Document:
    """The credit note as issued: the parties of the invoice it credits, as issued."""
    invoice = service.load(session, note.org_id, note.invoice_id)
    tz = _zone(session, note.org_id, note.customer_id, invoice)
    lines = [
        model.Line(
            description=item["description"],
            quantity=Decimal(1),
            unit_amount=Decimal(item["amount"]) / Decimal(10) ** exponent(note.currency),
            amount=item["amount"],
            period_start=None,
            period_end=None,
            tax_category=item["tax_category"],
            tax_rate=Decimal(item["tax_rate"]),
        )
        for item in note.lines
    ]
    return model.Document(
        kind="credit_note",
        number=note.number,
        issue_date=note.issued_at.astimezone(tz).date(),
        due_date=None,
        currency=note.currency,
        locale=invoice.locale,
        seller=_party(invoice.seller),
        buyer=_party(invoice.buyer),
        lines=lines,
        taxes=_rows(note.tax),
        subtotal=note.subtotal,
        discount=0,
        tax_total=note.tax_total,
        total=note.total,
        amount_paid=0,
        amount_due=note.total,  # what the buyer is credited (BT-115 of a credit note)
        notes=[n for n in [note.memo, *invoice.notes] if n],
        payment_instructions=None,
        buyer_reference=(invoice.buyer or {}).get("buyer_reference"),
        period_start=_span(invoice.period_start, invoice.period_end, tz)[0],
        period_end=_span(invoice.period_start, invoice.period_end, tz)[1],
        billing_reference=invoice.number,
    )


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


class EInvoiceNotIssuable(Conflict):
    code = "einvoice_not_issuable"
    title = "The document cannot be issued as an EN 16931 e-invoice"


# the document's parties are the organization (seller) and the customer (buyer)
_OWNERS = {"seller": "org", "buyer": "customer"}


def _field(name: str) -> str:
    head, _, rest = name.partition(".")
    return f"{_OWNERS[head]}.{rest}" if head in _OWNERS and rest else name


def einvoice_problems(
    session: Session, invoice: Invoice, *, lines: int | None = None
) -> list[FieldError]:
    """What keeps the invoice from being issued as an EN 16931 e-invoice, by the field to
    fix (``org.tax_id``, ``customer.address``, ``currency``). A finalized invoice is judged
    as issued (its seller and buyer blocks); a draft by today's organization and customer."""
    if invoice.finalized_at is not None:
        seller, buyer = invoice.seller or {}, invoice.buyer or {}
    else:
        from kassa.customers import service as customers
        from kassa.orgs import service as orgs

        seller = service.seller_of(orgs.load(session, invoice.org_id))
        buyer = service.buyer_of(customers.resolve(session, invoice.org_id, invoice.customer_id))
    categories = {invoice.tax_category} | {row["category"] for row in invoice.tax}
    count = len(service.lines_of(session, invoice)) if lines is None else lines
    found = ubl_xml.problems(
        _party(seller), _party(buyer), invoice.currency, categories, lines=count
    )
    return [FieldError(_field(p.field), f"{p.message} ({p.rule})") for p in found]


def _not_issuable(errors: list[FieldError]) -> EInvoiceNotIssuable:
    names = ", ".join(e.field for e in errors)
    return EInvoiceNotIssuable(
        detail=f"EN 16931 needs what this document lacks: {names}. The document is judged as "
        "issued; fixing the organization or customer applies to documents finalized after.",
        errors=errors,
    )


def invoice_ubl(session: Session, invoice: Invoice) -> bytes:
    """The invoice as issued, as EN 16931 UBL; :class:`EInvoiceNotIssuable` (409) naming the
    fields EN 16931 needs when it cannot be a valid one."""
    document = invoice_document(session, invoice)
    errors = einvoice_problems(session, invoice)
    if errors:
        raise _not_issuable(errors)
    return ubl_xml.render_ubl(document)


def credit_note_ubl(session: Session, note: CreditNote) -> bytes:
    """The credit note as EN 16931 UBL ``CreditNote`` referencing its invoice."""
    document = credit_note_document(session, note)
    categories = {line.tax_category for line in document.lines}
    categories |= {row.category for row in document.taxes}
    found = ubl_xml.problems(
        document.seller,
        document.buyer,
        document.currency,
        categories,
        lines=len(document.lines),
    )
    if found:
        raise _not_issuable([FieldError(_field(p.field), f"{p.message} ({p.rule})") for p in found])
    return ubl_xml.render_ubl(document)
