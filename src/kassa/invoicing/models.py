from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned

STATUSES = ("draft", "open", "paid", "void", "uncollectible")


class Invoice(TenantOwned, Base):
    """Money owed by a customer in one currency. A ``draft`` may still change (its usage is
    re-rated until it is finalized); from ``open`` on, a database trigger keeps everything
    but its settlement fields unchanged. ``billing_key`` (subscription + boundary instant)
    makes "one invoice per subscription period" a unique constraint."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'open', 'paid', 'void', 'uncollectible')", name="status"
        ),
        CheckConstraint("(number IS NULL) = (status = 'draft')", name="numbered"),
        CheckConstraint("amount_due >= 0", name="amount_due"),
        UniqueConstraint("org_id", "billing_key"),
        UniqueConstraint("org_id", "number"),
        Index("ix_invoices_org_id_customer_id", "org_id", "customer_id"),
        Index("ix_invoices_org_id_subscription_id", "org_id", "subscription_id"),
        Index(  # due drafts in the order a billing run takes them (migration 0009)
            "ix_invoices_org_id_finalize_at_id",
            "org_id",
            "finalize_at",
            "id",
            postgresql_where="status = 'draft'",
        ),
        # a draft by its id (migration 0008): the lookups that must find a draft
        Index("ix_invoices_org_id_id_draft", "org_id", "id", postgresql_where="status = 'draft'"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[str | None] = mapped_column(String(40))
    sequence: Mapped[int | None] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(String(40))
    subscription_id: Mapped[str | None] = mapped_column(String(40))
    billing_key: Mapped[str | None] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(14))
    currency: Mapped[str] = mapped_column(String(3))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    plan_id: Mapped[str | None] = mapped_column(String(40))
    plan_version: Mapped[int | None] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    coupon_id: Mapped[str | None] = mapped_column(String(40))
    tax_category: Mapped[str] = mapped_column(String(3))
    tax_rate: Mapped[Decimal] = mapped_column(Numeric)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    tax_total: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    credit_applied: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_credited: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_written_off: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_due: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    notes: Mapped[list[str]] = mapped_column(JSONB)
    buyer: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    seller: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    locale: Mapped[str] = mapped_column(String(16))
    payment_terms_days: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime]
    finalize_at: Mapped[datetime | None]
    finalized_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
    marked_uncollectible_at: Mapped[datetime | None]
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class InvoiceLine(TenantOwned, Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('fixed', 'usage', 'proration', 'discount', 'one_off')", name="kind"
        ),
        Index("ix_invoice_lines_org_id_invoice_id", "org_id", "invoice_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[Decimal] = mapped_column(Numeric)
    unit_amount: Mapped[Decimal | None] = mapped_column(Numeric)
    amount: Mapped[int] = mapped_column(BigInteger)
    meter_id: Mapped[str | None] = mapped_column(String(40))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    event_ids: Mapped[list[str] | None] = mapped_column(JSONB)
    adjustment_id: Mapped[str | None] = mapped_column(String(40))
    revenue_account: Mapped[str] = mapped_column(String(80))


class InvoiceCounter(TenantOwned, Base):
    """The last number given per org and kind (invoice, credit note): a row lock makes
    numbering gapless under concurrency, and a rollback gives the number back."""

    __tablename__ = "document_counters"

    kind: Mapped[str] = mapped_column(String(12), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class CreditNote(TenantOwned, Base):
    """A correction of a finalized invoice, immutable once written. ``to_invoice`` reduced
    what was due; ``to_credit`` became customer credit (the invoice had been paid)."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        UniqueConstraint("org_id", "number"),
        Index("ix_credit_notes_org_id_invoice_id", "org_id", "invoice_id"),
        CheckConstraint("total > 0", name="total"),
        CheckConstraint("to_invoice + to_credit = total", name="split"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[str] = mapped_column(String(40))
    invoice_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(40))
    memo: Mapped[str | None] = mapped_column(String(500))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    tax_total: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    to_invoice: Mapped[int] = mapped_column(BigInteger)
    to_credit: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[datetime]
    created_at: Mapped[datetime]
