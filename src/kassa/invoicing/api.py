"""Routes: /v1/invoices, /v1/credit_notes, /v1/billing_runs, customer balance/statement."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.context import Principal
from kassa.core.errors import field_error
from kassa.core.ids import new_id
from kassa.core.money import is_currency
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, paginate
from kassa.core.schemas import problem_responses
from kassa.customers import service as customers
from kassa.customers.errors import CustomerNotFound
from kassa.identity.auth import MANAGE, READ, WRITE, db, idempotent, runtime
from kassa.invoicing import billing, credit_notes, documents, schemas, service, statements
from kassa.invoicing.models import CreditNote, Invoice
from kassa.orgs import service as orgs
from kassa.runtime import Runtime

router = APIRouter(
    tags=["invoices"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)


def invoice_out(session: Session, invoice: Invoice) -> schemas.Invoice:
    lines = service.lines_of(session, invoice)
    return schemas.Invoice(
        id=invoice.id, number=invoice.number, customer=invoice.customer_id,
        subscription=invoice.subscription_id, status=invoice.status,
        currency=invoice.currency, period_start=invoice.period_start,
        period_end=invoice.period_end,
        lines=[
            schemas.Line(
                id=line.id, kind=line.kind,
                description=line.description, quantity=line.quantity,
                unit_amount=line.unit_amount, amount=line.amount, meter=line.meter_id,
                period_start=line.period_start, period_end=line.period_end,
                event_ids=line.event_ids,
            )
            for line in lines
        ],
        subtotal=invoice.subtotal, discount=invoice.discount,
        tax=[schemas.TaxRow(**row) for row in invoice.tax], total=invoice.total,
        credit_applied=invoice.credit_applied, amount_paid=invoice.amount_paid,
        amount_credited=invoice.amount_credited,
        amount_written_off=invoice.amount_written_off,
        amount_refunded=invoice.amount_refunded, amount_due=invoice.amount_due,
        issued_at=invoice.issued_at, finalize_at=invoice.finalize_at,
        finalized_at=invoice.finalized_at, due_at=invoice.due_at, paid_at=invoice.paid_at,
        voided_at=invoice.voided_at, marked_uncollectible_at=invoice.marked_uncollectible_at,
        notes=invoice.notes, metadata=invoice.metadata_, created_at=invoice.created_at,
        einvoice=_einvoice(session, invoice, len(lines)),
    )  # fmt: skip


def _einvoice(session: Session, invoice: Invoice, lines: int) -> schemas.EInvoice:
    errors = documents.einvoice_problems(session, invoice, lines=lines)
    return schemas.EInvoice(
        issuable=not errors,
        missing=[e.field for e in errors if e.field != "currency" and e.field != "lines"],
        errors=[schemas.FieldProblem(field=e.field, message=e.message) for e in errors],
    )


def _now(session: Session, invoice: Invoice, rt: Runtime) -> datetime:
    customer = customers.resolve(session, invoice.org_id, invoice.customer_id)
    return customers.now_for(session, customer, rt.clock)


@router.get("/v1/invoices", response_model=Page[schemas.Invoice])
def list_invoices(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    customer: str | None = Query(None, max_length=255),
    status: schemas.InvoiceStatus | None = Query(None),
    subscription: str | None = Query(None, max_length=40),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[schemas.Invoice]:
    stmt = select(Invoice).where(Invoice.org_id == who.org_id)
    if customer is not None:
        stmt = stmt.where(
            Invoice.customer_id == customers.resolve(session, who.org_id, customer).id
        )
    if status is not None:
        stmt = stmt.where(Invoice.status == status)
    if subscription is not None:
        stmt = stmt.where(Invoice.subscription_id == subscription)
    rows, has_more, next_cursor = paginate(session, stmt, Invoice.id, limit, cursor)
    return Page(
        data=[invoice_out(session, i) for i in rows], has_more=has_more, next_cursor=next_cursor
    )


@router.post("/v1/invoices", status_code=201, response_model=schemas.Invoice)
def create_one_off(
    body: schemas.OneOffIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Invoice:
    try:
        customer = customers.resolve_active(session, who.org_id, body.customer)
    except CustomerNotFound:
        raise field_error("customer", "no such customer") from None
    currency = body.currency or customer.currency or orgs.load(session, who.org_id).currency
    if not is_currency(currency.lower()):
        raise field_error("currency", "must be an ISO 4217 code")
    invoice = service.create_one_off(
        session, who.org_id, customer.id, currency.lower(),
        [(line.description, line.quantity, Decimal(line.unit_amount)) for line in body.lines],
        body.due_days, customers.now_for(session, customer, rt.clock), rt.clock,
        locale=customer.locale, metadata=body.metadata, auto_finalize=body.auto_finalize,
    )  # fmt: skip
    return invoice_out(session, invoice)


@router.get("/v1/invoices/{invoice_id}", response_model=schemas.Invoice)
def get_invoice(
    invoice_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> schemas.Invoice:
    return invoice_out(session, service.load(session, who.org_id, invoice_id))


@router.get(
    "/v1/invoices/{invoice_id}/pdf",
    response_class=FileResponse,
    responses={200: {"content": {"application/pdf": {}}}},
)
def invoice_pdf(
    invoice_id: str,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> FileResponse:
    invoice = service.load(session, who.org_id, invoice_id)
    document = documents.invoice_document(session, invoice)
    path = documents.stored_pdf(
        rt.settings.documents_path, who.org_id, invoice.id, lambda: document
    )
    return FileResponse(path, media_type="application/pdf", filename=f"{invoice.number}.pdf")


@router.get(
    "/v1/invoices/{invoice_id}/ubl",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}},
)
def invoice_ubl(
    invoice_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> Response:
    """The invoice as issued, as an EN 16931 UBL 2.1 ``Invoice``. 409 ``einvoice_not_issuable``
    naming the organization or customer fields EN 16931 needs when it cannot be a valid one
    (see the invoice's ``einvoice`` field); 409 for a draft."""
    invoice = service.load(session, who.org_id, invoice_id)
    body = documents.invoice_ubl(session, invoice)
    return Response(
        body, media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{invoice.number}.xml"'},
    )  # fmt: skip


def _act(session: Session, who: Principal, invoice_id: str) -> Invoice:
    return service.load(session, who.org_id, invoice_id, lock=True)


@router.post("/v1/invoices/{invoice_id}/finalize", response_model=schemas.Invoice)
def finalize_invoice(
    invoice_id: str,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Invoice:
    invoice = _act(session, who, invoice_id)
    service.finalize(session, invoice, _now(session, invoice, rt), rt.clock)
    return invoice_out(session, invoice)


@router.post("/v1/invoices/{invoice_id}/void", response_model=schemas.Invoice)
def void_invoice(
    invoice_id: str,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Invoice:
    invoice = _act(session, who, invoice_id)
    service.void(session, invoice, _now(session, invoice, rt), rt.clock)
    return invoice_out(session, invoice)


@router.post("/v1/invoices/{invoice_id}/mark_uncollectible", response_model=schemas.Invoice)
def mark_uncollectible(
    invoice_id: str,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Invoice:
    invoice = _act(session, who, invoice_id)
    service.mark_uncollectible(session, invoice, _now(session, invoice, rt), rt.clock)
    return invoice_out(session, invoice)


@router.post("/v1/invoices/{invoice_id}/pay", response_model=schemas.Invoice)
def pay_out_of_band(
    invoice_id: str,
    body: schemas.PaymentIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Invoice:
    """Record money received outside the payment providers (bank transfer, cash)."""
    invoice = _act(session, who, invoice_id)
    amount = body.amount if body.amount is not None else invoice.amount_due
    service.record_payment(
        session, invoice, amount, "cash", body.reference or new_id("pay"),
        _now(session, invoice, rt), rt.clock,
    )  # fmt: skip
    return invoice_out(session, invoice)


@router.post("/v1/billing_runs", response_model=schemas.BillingRun)
def billing_run(
    body: schemas.BillingRunIn | None = None,
    who: Principal = Depends(MANAGE),
    rt: Runtime = Depends(runtime),
) -> schemas.BillingRun:
    """Bill everything of this organization that is due (safe to call any number of times).
    Runs in its own transactions (chunks), like the periodic job."""
    as_of = body.as_of if body else None
    if as_of is not None and as_of > rt.clock.now():
        raise field_error("as_of", "must not be in the future (use a test clock to simulate)")
    result = billing.run(rt.db, rt.clock, as_of, org_id=who.org_id)
    return schemas.BillingRun(
        as_of=result.as_of, transitions=result.transitions,
        invoices_created=result.invoices_created, invoices_finalized=result.invoices_finalized,
        subscriptions_failed=result.failed,
    )  # fmt: skip


# --- credit notes ------------------------------------------------------------------------


def credit_note_out(note: CreditNote) -> schemas.CreditNote:
    return schemas.CreditNote(
        id=note.id, number=note.number, invoice=note.invoice_id, customer=note.customer_id,
        currency=note.currency, reason=note.reason, memo=note.memo,
        lines=[schemas.CreditNoteLine(**item) for item in note.lines], subtotal=note.subtotal,
        tax=[schemas.TaxRow(**row) for row in note.tax], tax_total=note.tax_total,
        total=note.total, to_invoice=note.to_invoice, to_credit=note.to_credit,
        issued_at=note.issued_at, created_at=note.created_at,
    )  # fmt: skip


@router.post("/v1/credit_notes", status_code=201, response_model=schemas.CreditNote)
def create_credit_note(
    body: schemas.CreditNoteIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.CreditNote:
    try:
        invoice = service.load(session, who.org_id, body.invoice)
    except service.InvoiceNotFound:
        raise field_error("invoice", "no such invoice") from None
    note = credit_notes.create(session, who.org_id, body, _now(session, invoice, rt), rt.clock)
    return credit_note_out(note)


@router.get("/v1/credit_notes", response_model=Page[schemas.CreditNote])
def list_credit_notes(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    invoice: str | None = Query(None, max_length=40),
    customer: str | None = Query(None, max_length=255),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[schemas.CreditNote]:
    stmt = select(CreditNote).where(CreditNote.org_id == who.org_id)
    if invoice is not None:
        stmt = stmt.where(CreditNote.invoice_id == invoice)
    if customer is not None:
        stmt = stmt.where(
            CreditNote.customer_id == customers.resolve(session, who.org_id, customer).id
        )
    rows, has_more, next_cursor = paginate(session, stmt, CreditNote.id, limit, cursor)
    return Page(data=[credit_note_out(n) for n in rows], has_more=has_more, next_cursor=next_cursor)


@router.get("/v1/credit_notes/{note_id}", response_model=schemas.CreditNote)
def get_credit_note(
    note_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> schemas.CreditNote:
    return credit_note_out(credit_notes.load(session, who.org_id, note_id))


@router.get(
    "/v1/credit_notes/{note_id}/pdf",
    response_class=FileResponse,
    responses={200: {"content": {"application/pdf": {}}}},
)
def credit_note_pdf(
    note_id: str,
    who: Principal = Depends(READ),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> FileResponse:
    note = credit_notes.load(session, who.org_id, note_id)
    document = documents.credit_note_document(session, note)
    path = documents.stored_pdf(rt.settings.documents_path, who.org_id, note.id, lambda: document)
    return FileResponse(path, media_type="application/pdf", filename=f"{note.number}.pdf")


@router.get(
    "/v1/credit_notes/{note_id}/ubl",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}}},
)
def credit_note_ubl(
    note_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> Response:
    """The credit note as an EN 16931 UBL 2.1 ``CreditNote`` referencing the invoice it
    credits (BillingReference); 409 ``einvoice_not_issuable`` like the invoice's."""
    note = credit_notes.load(session, who.org_id, note_id)
    body = documents.credit_note_ubl(session, note)
    return Response(
        body,
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{note.number}.xml"'},
    )


# --- customer balance and statement -------------------------------------------------------


@router.get("/v1/customers/{customer_id}/balance", response_model=schemas.Balance)
def customer_balance(
    customer_id: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> schemas.Balance:
    customer = customers.resolve(session, who.org_id, customer_id)
    return statements.balance(session, who.org_id, customer.id)


@router.get(
    "/v1/customers/{customer_id}/statement",
    response_model=schemas.Statement,
    responses={200: {"content": {"application/pdf": {}}}},
)
def customer_statement(
    customer_id: str,
    from_: date = Query(alias="from"),
    to: date = Query(),
    currency: str | None = Query(None, min_length=3, max_length=3),
    format: Literal["json", "pdf"] = Query("json"),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> schemas.Statement | Response:
    if to < from_:
        raise field_error("to", "must not be before from")
    if currency is not None and not is_currency(currency.lower()):
        raise field_error("currency", "must be an ISO 4217 currency code, e.g. eur")
    customer = customers.resolve(session, who.org_id, customer_id)
    statement = statements.statement(session, who.org_id, customer, from_, to, currency)
    if format == "pdf":
        return Response(
            statements.statement_pdf(session, who.org_id, customer, statement),
            media_type="application/pdf",
        )
    return statement
