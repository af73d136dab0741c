from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned

ACCOUNT_TYPES = ("asset", "liability", "revenue", "expense")


class LedgerAccount(TenantOwned, Base):
    """``code`` names the account: ``receivable:cus_…``, ``revenue:<plan code>``,
    ``tax:<category>:<rate>``, ``customer_credit:cus_…``, ``psp_clearing``, ``cash``,
    ``discounts``, ``write_offs``, ``refunds``; one account per code and currency."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("org_id", "code", "currency"),
        CheckConstraint("type IN ('asset', 'liability', 'revenue', 'expense')", name="type"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(120))
    type: Mapped[str] = mapped_column(String(10))
    currency: Mapped[str] = mapped_column(String(3))
    customer_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class LedgerTransaction(TenantOwned, Base):
    """One money event. ``idempotency_key`` is derived from its source (``invoice_finalized:
    inv_…``), so the same event is recorded once whatever retries happen."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        Index("ix_ledger_transactions_org_id_source_id", "org_id", "source_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    source_type: Mapped[str] = mapped_column(String(20))
    source_id: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]


class LedgerEntry(TenantOwned, Base):
    """One side of a transaction: exactly one of debit and credit is positive. Entries on a
    receivable name the invoice they belong to, so an invoice's amount due can be read off
    the ledger."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("debit >= 0 AND credit >= 0 AND (debit = 0) <> (credit = 0)", name="side"),
        Index("ix_ledger_entries_org_id_account_id", "org_id", "account_id"),
        Index("ix_ledger_entries_org_id_invoice_id", "org_id", "invoice_id"),
    )

    transaction_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    debit: Mapped[int] = mapped_column(BigInteger)
    credit: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    invoice_id: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[datetime]
