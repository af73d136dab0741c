from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned


class MeterPoint(TenantOwned, Base):
    """A physical meter (a flat's electricity meter): its register and the usage meter its
    consumption is billed on (a ``sum`` meter)."""

    __tablename__ = "meter_points"
    __table_args__ = (UniqueConstraint("org_id", "code"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(100))
    meter_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str | None] = mapped_column(String(40))
    register_digits: Mapped[int | None] = mapped_column(Integer)
    register_decimals: Mapped[int] = mapped_column(Integer, default=0)
    spread_seconds: Mapped[int | None] = mapped_column(Integer)
    unit: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime]


class MeterReading(TenantOwned, Base):
    """One register value as read (or estimated). Never changed; later readings supersede."""

    __tablename__ = "meter_readings"
    __table_args__ = (
        CheckConstraint("quality IN ('actual', 'estimated', 'manual')", name="quality"),
        Index(
            "ix_meter_readings_org_id_meter_point_id_read_at", "org_id", "meter_point_id", "read_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    meter_point_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(String(40))
    read_at: Mapped[datetime]
    value: Mapped[Decimal] = mapped_column(Numeric)
    quality: Mapped[str] = mapped_column(String(10))
    rollover: Mapped[bool] = mapped_column(default=False)
    replacement: Mapped[bool] = mapped_column(default=False)
    start_value: Mapped[Decimal] = mapped_column(Numeric, default=0)
    source: Mapped[str] = mapped_column(String(10), default="api")
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
