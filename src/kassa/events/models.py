from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, literal_column, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import ColumnClause

from kassa.db.base import Base, TenantOwned

# the customer events (``customer.created|updated|deleted``), as the partial index on them
# and the queries that use it spell it (a bound parameter in its place would not prove the
# index's predicate to a generic plan)
_CUSTOMER_TYPES = "'customer.%'"


class DomainEvent(TenantOwned, Base):
    """One state change, e.g. ``subscription.created``, with a snapshot of the object.
    ``occurred_at`` is the business time (a test clock's time for simulated customers);
    ``created_at`` the wall time it was written. Delivered later (outbound webhooks)."""

    __tablename__ = "domain_events"
    __table_args__ = (
        # customer events by customer (export, anonymization): migration 0012
        Index(
            "ix_domain_events_org_id_object_id_customer", "org_id", "object_id",
            postgresql_where=text(f"type LIKE {_CUSTOMER_TYPES}"),
        ),
    )  # fmt: skip

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime]


CUSTOMER_EVENTS: ColumnClause[str] = literal_column(_CUSTOMER_TYPES)  # for DomainEvent.type.like
