"""Meter points and readings; per-meter lateness and anomaly rules; the organization's late
usage policy; usage adjustments that name their events; flagged anomalies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:22:43.033894
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from kassa.db.rls import enable_rls_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meter_points",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("register_digits", sa.Integer(), nullable=True),
        sa.Column("register_decimals", sa.Integer(), nullable=False),
        sa.Column("spread_seconds", sa.Integer(), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_meter_points")),
        sa.UniqueConstraint("org_id", "code", name=op.f("uq_meter_points_org_id_code")),
    )
    op.create_table(
        "meter_readings",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("meter_point_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("quality", sa.String(length=10), nullable=False),
        sa.Column("rollover", sa.Boolean(), nullable=False),
        sa.Column("replacement", sa.Boolean(), nullable=False),
        sa.Column("start_value", sa.Numeric(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "quality IN ('actual', 'estimated', 'manual')", name=op.f("ck_meter_readings_quality")
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_meter_readings")),
    )
    op.create_index(
        "ix_meter_readings_org_id_meter_point_id_read_at",
        "meter_readings",
        ["org_id", "meter_point_id", "read_at"],
        unique=False,
    )
    op.create_table(
        "usage_anomalies",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("median", sa.Numeric(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "org_id", "customer_id", "meter_id", "period_start", name=op.f("pk_usage_anomalies")
        ),
    )
    op.add_column(
        "meters", sa.Column("lateness_seconds", sa.Integer(), nullable=False, server_default="3600")
    )
    op.add_column("meters", sa.Column("anomaly_multiplier", sa.Numeric(), nullable=True))
    op.add_column(
        "meters", sa.Column("anomaly_min_periods", sa.Integer(), nullable=False, server_default="3")
    )
    op.add_column(
        "organizations",
        sa.Column("late_usage", sa.String(length=8), nullable=False, server_default="reject"),
    )
    op.create_check_constraint(
        op.f("ck_organizations_late_usage"), "organizations", "late_usage IN ('reject', 'adjust')"
    )
    op.add_column(
        "subscription_adjustments", sa.Column("meter_id", sa.String(length=40), nullable=True)
    )
    op.add_column(
        "subscription_adjustments",
        sa.Column("event_ids", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    for table in ("meter_points", "meter_readings", "usage_anomalies"):
        for stmt in enable_rls_sql(table):
            op.execute(stmt)


def downgrade() -> None:
    raise NotImplementedError("this migration cannot be reverted")
