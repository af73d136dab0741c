"""customers on a test clock, indexed

A billing run skips subscriptions and drafts whose customer runs on a test clock (those
bill as their clock moves): each chunk asks ``NOT EXISTS (a customer of the row on a test
clock)``. No index answered "on a test clock", so PostgreSQL read every customer of the
organization once per chunk: a run over 100 000 subscriptions read 100 000 customers a
hundred times, and the cost grew with the square of the organization. A partial index
holds only the customers on a test clock (a handful, in sandboxes), so the check is a probe
into a nearly empty index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_customers_org_id_id_test_clock", "customers", ["org_id", "id"],
        postgresql_where=sa.text("test_clock_id IS NOT NULL"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_customers_org_id_id_test_clock", table_name="customers")
