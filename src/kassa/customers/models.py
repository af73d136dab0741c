from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned


class Customer(TenantOwned, Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index(
            "uq_customers_org_id_external_id",
            "org_id",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index(  # the few customers on a test clock, which billing runs skip (migration 0011)
            "ix_customers_org_id_id_test_clock",
            "org_id",
            "id",
            postgresql_where=text("test_clock_id IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str | None] = mapped_column(String(3))
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(16))
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    tax_exempt: Mapped[bool] = mapped_column(default=False)
    tax_id: Mapped[str | None] = mapped_column(String(64))
    tax_kind: Mapped[str] = mapped_column(String(12), default="individual")
    buyer_reference: Mapped[str | None] = mapped_column(String(200))  # EN 16931 BT-10
    test_clock_id: Mapped[str | None] = mapped_column(String(40))
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    anonymized_at: Mapped[datetime | None]
