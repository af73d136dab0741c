from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Index, Numeric, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned


class UsageEvent(TenantOwned, Base):
    """One measured fact, the source of truth. ``event_id`` (the client's) is unique per org
    forever. ``meter_id`` is null when the event matched no meter filter (kept, not counted).
    Voided events stay for the audit trail and count nowhere."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("org_id", "event_id"),
        Index(
            "ix_usage_events_org_id_customer_id_meter_id_ts",
            "org_id",
            "customer_id",
            "meter_id",
            "ts",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[str] = mapped_column(String(40))
    meter_id: Mapped[str | None] = mapped_column(String(40))
    event_name: Mapped[str] = mapped_column(String(100))
    ts: Mapped[datetime]
    value: Mapped[Decimal | None] = mapped_column(Numeric)
    unique_value: Mapped[str | None] = mapped_column(String(255))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime]
    late: Mapped[bool] = mapped_column(default=False)
    voided_at: Mapped[datetime | None]
    void_reason: Mapped[str | None] = mapped_column(String(500))


class UsageSeries(TenantOwned, Base):
    """A busy (customer, meter) series: its events are folded into hourly rollups as they
    arrive. Other series have no rollups and are read from their events."""

    __tablename__ = "usage_series"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rolled_up_at: Mapped[datetime]


class UsageRollup(TenantOwned, Base):
    """Per busy series and UTC hour: exact count, sum, max and latest of the events counted
    in that hour, maintained in the same statement that inserts the events."""

    __tablename__ = "usage_rollups"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    sum: Mapped[Decimal] = mapped_column(Numeric)
    max: Mapped[Decimal | None] = mapped_column(Numeric)
    latest_ts: Mapped[datetime]
    latest_id: Mapped[str] = mapped_column(String(40))
    latest_value: Mapped[Decimal | None] = mapped_column(Numeric)


class UsageUniqueValue(TenantOwned, Base):
    """The distinct values of a unique_count meter's property per customer and hour: a
    distinct count over any range of whole hours is exact from these rows."""

    __tablename__ = "usage_unique_values"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)


class UsageAnomaly(TenantOwned, Base):
    """A flagged period: usage above the meter's multiple of the trailing median (once)."""

    __tablename__ = "usage_anomalies"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    value: Mapped[Decimal] = mapped_column(Numeric)
    median: Mapped[Decimal] = mapped_column(Numeric)
    detected_at: Mapped[datetime]
