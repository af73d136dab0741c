from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from kassa.core.money import MAX_AMOUNT
from kassa.core.schemas import ExactDecimal, Metadata, PositiveAmount, Strict, Timestamp

InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]


class Line(BaseModel):
    id: str
    kind: Literal["fixed", "usage", "proration", "discount", "one_off"]
    description: str
    quantity: Decimal
    unit_amount: Decimal | None
    amount: int
    meter: str | None = None
    period_start: datetime | None
    period_end: datetime | None
    event_ids: list[str] | None = None


class TaxRow(BaseModel):
    category: str
    rate: Decimal
    taxable_amount: int
    amount: int


class FieldProblem(BaseModel):
    field: str
    message: str


class EInvoice(BaseModel):
    """Whether the invoice can be issued as an EN 16931 e-invoice (``GET …/ubl``)."""

    issuable: bool
    missing: list[str] = Field(
        description="Organization or customer fields EN 16931 needs, e.g. org.tax_id, "
        "customer.address (a finalized invoice is judged as issued)"
    )
    errors: list[FieldProblem] = Field(description="Every reason, including unsupported currency")


class Invoice(BaseModel):
    id: str
    object: Literal["invoice"] = "invoice"
    number: str | None
    customer: str
    subscription: str | None
    status: InvoiceStatus
    currency: str
    period_start: datetime | None
    period_end: datetime | None
    lines: list[Line]
    subtotal: int
    discount: int
    tax: list[TaxRow]
    total: int
    credit_applied: int = Field(description="Customer credit used to settle this invoice")
    amount_paid: int
    amount_credited: int = Field(description="Credit notes that reduced what was due")
    amount_written_off: int
    amount_refunded: int
    amount_due: int
    issued_at: datetime
    finalize_at: datetime | None = Field(description="When a draft is finalized by itself")
    finalized_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    marked_uncollectible_at: datetime | None
    notes: list[str]
    metadata: dict[str, str]
    created_at: datetime
    einvoice: EInvoice


class OneOffLine(Strict):
    description: str = Field(min_length=1, max_length=500)
    quantity: ExactDecimal = Field(default=Decimal(1), gt=0, max_digits=18, decimal_places=6)
    unit_amount: int = Field(description="Minor units per unit", ge=-MAX_AMOUNT, le=MAX_AMOUNT)

    @model_validator(mode="after")
    def _amount_bounded(self) -> OneOffLine:
        if abs(self.quantity * self.unit_amount) > MAX_AMOUNT:
            raise ValueError(f"quantity × unit_amount must be at most {MAX_AMOUNT} in magnitude")
        return self


class OneOffIn(Strict):
    customer: str = Field(max_length=255)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    lines: list[OneOffLine] = Field(min_length=1, max_length=500)
    due_days: int | None = Field(default=None, ge=0, le=365)
    auto_finalize: bool = False
    metadata: Metadata | None = None


class PaymentIn(Strict):
    """Money received outside Kassa's payment providers (bank transfer, cash)."""

    amount: PositiveAmount | None = Field(default=None, description="Default: the amount due")
    reference: str | None = Field(default=None, max_length=200)


class BillingRunIn(Strict):
    as_of: Timestamp | None = None


class BillingRun(BaseModel):
    object: Literal["billing_run"] = "billing_run"
    as_of: datetime
    transitions: int
    invoices_created: int
    invoices_finalized: int
    subscriptions_failed: int = Field(
        default=0,
        description="Subscriptions this run could not bill: skipped and recorded"
        " (their billing_error), retried by later runs with backoff",
    )


class CreditLineIn(Strict):
    line: str = Field(max_length=40, description="An invoice line id")
    amount: PositiveAmount | None = Field(default=None, description="Net amount; default: all left")


class CreditNoteIn(Strict):
    invoice: str = Field(max_length=40)
    amount: PositiveAmount | None = Field(default=None, description="Total credited, tax included")
    lines: list[CreditLineIn] | None = Field(default=None, min_length=1, max_length=500)
    reason: Literal[
        "duplicate", "fraudulent", "order_change", "product_unsatisfactory", "other"
    ] = "other"
    memo: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_way(self) -> CreditNoteIn:
        if (self.amount is None) == (self.lines is None):
            raise ValueError("give either amount or lines")
        return self


class CreditNoteLine(BaseModel):
    invoice_line: str | None
    description: str
    amount: int
    tax_category: str
    tax_rate: Decimal


class CreditNote(BaseModel):
    id: str
    object: Literal["credit_note"] = "credit_note"
    number: str
    invoice: str
    customer: str
    currency: str
    reason: str
    memo: str | None
    lines: list[CreditNoteLine]
    subtotal: int
    tax: list[TaxRow]
    tax_total: int
    total: int
    to_invoice: int = Field(description="Reduced what the invoice still owed")
    to_credit: int = Field(description="Became customer credit (the invoice was paid)")
    issued_at: datetime
    created_at: datetime


class BalanceRow(BaseModel):
    currency: str
    receivable: int = Field(description="Owed on finalized invoices")
    credit: int = Field(description="Unused customer credit")
    balance: int = Field(description="receivable − credit: what the customer owes net")


class Balance(BaseModel):
    object: Literal["customer_balance"] = "customer_balance"
    customer: str
    balances: list[BalanceRow]


class StatementItem(BaseModel):
    occurred_at: datetime
    kind: str
    source: dict[str, str]
    description: str
    debit: int = Field(description="Increases what the customer owes")
    credit: int = Field(description="Decreases what the customer owes")
    balance: int


class Statement(BaseModel):
    object: Literal["statement"] = "statement"
    customer: str
    currency: str
    from_: date = Field(alias="from")
    to: date
    opening_balance: int
    items: list[StatementItem]
    closing_balance: int

    model_config = {"populate_by_name": True}
