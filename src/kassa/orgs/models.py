from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base


class Organization(Base):
    """Platform-level table (no RLS): guarded by the service layer, which only ever loads
    the organization of the authenticated principal."""

    __tablename__ = "organizations"
    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        CheckConstraint("late_usage IN ('reject', 'adjust')", name="late_usage"),
        {"info": {"platform": True}},
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(4))
    tax_ruleset: Mapped[str] = mapped_column(String(16))
    invoice_prefix: Mapped[str] = mapped_column(String(12))
    dunning: Mapped[dict[str, Any]] = mapped_column(JSONB)
    late_usage: Mapped[str] = mapped_column(String(8), default="reject")
    invoice_grace_seconds: Mapped[int] = mapped_column(default=3600)
    payment_terms_days: Mapped[int] = mapped_column(default=30)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    tax_id: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(320))
    payment_instructions: Mapped[str | None] = mapped_column(String(1000))
    iban: Mapped[str | None] = mapped_column(String(34))  # payee account on invoices (BT-84)
    bic: Mapped[str | None] = mapped_column(String(11))  # its bank (BT-86)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
