"""Metering: usage events (deduplicated by event_id per org), hourly rollups, distinct
values for unique_count; all tenant-owned with forced RLS.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:14:07.115407
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from kassa.db.rls import enable_rls_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=True),
        sa.Column("unique_value", sa.String(length=255), nullable=True),
        sa.Column("properties", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_usage_events")),
        sa.UniqueConstraint("org_id", "event_id", name=op.f("uq_usage_events_org_id_event_id")),
    )
    op.create_index(
        "ix_usage_events_org_id_customer_id_meter_id_ts",
        "usage_events",
        ["org_id", "customer_id", "meter_id", "ts"],
        unique=False,
    )
    op.create_table(
        "usage_rollups",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Numeric(), nullable=False),
        sa.Column("max", sa.Numeric(), nullable=True),
        sa.Column("latest_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latest_id", sa.String(length=40), nullable=False),
        sa.Column("latest_value", sa.Numeric(), nullable=True),
        sa.PrimaryKeyConstraint(
            "org_id", "customer_id", "meter_id", "hour", name=op.f("pk_usage_rollups")
        ),
    )
    op.create_table(
        "usage_unique_values",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id",
            "customer_id",
            "meter_id",
            "hour",
            "value",
            name=op.f("pk_usage_unique_values"),
        ),
    )
    for table in ("usage_events", "usage_rollups", "usage_unique_values"):
        for stmt in enable_rls_sql(table):
            op.execute(stmt)


def downgrade() -> None:
    raise NotImplementedError("metering cannot be reverted")
