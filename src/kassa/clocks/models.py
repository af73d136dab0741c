from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned


class TestClock(TenantOwned, Base):
    __tablename__ = "test_clocks"
    __table_args__ = (CheckConstraint("status IN ('ready', 'advancing')", name="status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    frozen_time: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]
