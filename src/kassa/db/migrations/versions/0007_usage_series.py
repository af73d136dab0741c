"""busy usage series: hourly rollups only for the series that need them

A rollup row per (customer, meter, hour) doubled the database work of ingestion whenever
events were sparse (one event per hour per series is already a rollup row per event), to
speed up reads that were cheap anyway. Now a series is folded into rollups only once one
read counts more than ``metering.service.ROLLUP_THRESHOLD`` of its events; the others are
read from their events (an index range). ``usage_series`` lists the busy series; every
series that has rollups today is busy, so existing rollups stay in use.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kassa.db.rls import enable_rls_sql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_series",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("rolled_up_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "customer_id", "meter_id", name=op.f("pk_usage_series")),
    )
    for stmt in enable_rls_sql("usage_series"):
        op.execute(stmt)
    op.execute(
        "INSERT INTO usage_series (org_id, customer_id, meter_id, rolled_up_at)"
        " SELECT DISTINCT org_id, customer_id, meter_id, now() FROM usage_rollups"
    )


def downgrade() -> None:
    raise NotImplementedError("metering cannot be reverted")
