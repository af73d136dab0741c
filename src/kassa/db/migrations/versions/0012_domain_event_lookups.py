"""domain events: the index no query used dropped, customer events indexed by customer

``ix_domain_events_org_id_type`` served no query: events are read by the object they are
about (a customer's export, a customer's anonymization), never by type alone. Every event
a billing run writes (three per invoice) paid an entry in it, a tenth of the cost of the
statement that writes them. The queries that exist looked customer events up through no
index at all, reading every event of the organization; a partial index holds only the
customer events (``customer.created|updated|deleted``), by customer, so those reads are
probes and billing's events pay nothing for it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CUSTOMER_EVENTS = "type LIKE 'customer.%'"


def upgrade() -> None:
    op.drop_index("ix_domain_events_org_id_type", table_name="domain_events")
    op.create_index(
        "ix_domain_events_org_id_object_id_customer", "domain_events", ["org_id", "object_id"],
        postgresql_where=sa.text(CUSTOMER_EVENTS),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_domain_events_org_id_object_id_customer", table_name="domain_events")
    op.create_index("ix_domain_events_org_id_type", "domain_events", ["org_id", "type"])
