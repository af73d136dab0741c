"""Billing core I: customers, meters, versioned plans, coupons, subscriptions, test clocks,
domain events; every table tenant-owned with forced RLS.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:01:07.116785
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from kassa.db.rls import enable_rls_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("percent_off", sa.String(length=20), nullable=True),
        sa.Column("amount_off", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("duration", sa.String(length=10), nullable=False),
        sa.Column("duration_in_periods", sa.Integer(), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("times_redeemed", sa.Integer(), nullable=False),
        sa.Column("redeem_by", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "duration IN ('once', 'repeating', 'forever')", name=op.f("ck_coupons_duration")
        ),
        sa.CheckConstraint(
            "(percent_off IS NULL) <> (amount_off IS NULL)",
            name=op.f("ck_coupons_percent_xor_amount"),
        ),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR times_redeemed <= max_redemptions",
            name=op.f("ck_coupons_redemptions"),
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("org_id", "code", name=op.f("uq_coupons_org_id_code")),
    )
    op.create_table(
        "customers",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("address", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("tax_exempt", sa.Boolean(), nullable=False),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("tax_kind", sa.String(length=12), nullable=False),
        sa.Column("test_clock_id", sa.String(length=40), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("anonymized_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_customers")),
    )
    op.create_index(
        "uq_customers_org_id_external_id",
        "customers",
        ["org_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "domain_events",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=40), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_domain_events")),
    )
    op.create_index(
        "ix_domain_events_org_id_type", "domain_events", ["org_id", "type"], unique=False
    )
    op.create_table(
        "meters",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_name", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("aggregation", sa.String(length=20), nullable=False),
        sa.Column("value_property", sa.String(length=100), nullable=True),
        sa.Column("unique_property", sa.String(length=100), nullable=True),
        sa.Column("unit", sa.String(length=40), nullable=True),
        sa.Column("filters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "aggregation IN ('count', 'sum', 'max', 'unique_count', 'latest', 'time_weighted_avg')",
            name=op.f("ck_meters_aggregation"),
        ),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_meters")),
        sa.UniqueConstraint("org_id", "event_name", name=op.f("uq_meters_org_id_event_name")),
    )
    op.create_table(
        "plans",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("interval", sa.String(length=5), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "interval IN ('day', 'week', 'month', 'year')", name=op.f("ck_plans_interval")
        ),
        sa.CheckConstraint("interval_count BETWEEN 1 AND 36", name=op.f("ck_plans_interval_count")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_plans")),
        sa.UniqueConstraint("org_id", "code", name=op.f("uq_plans_org_id_code")),
    )
    op.create_table(
        "subscription_adjustments",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("invoiced_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_subscription_adjustments")),
    )
    op.create_index(
        "ix_subscription_adjustments_org_id_subscription_id",
        "subscription_adjustments",
        ["org_id", "subscription_id"],
        unique=False,
    )
    op.create_table(
        "subscriptions",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("coupon_id", sa.String(length=40), nullable=True),
        sa.Column("coupon_periods_used", sa.Integer(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billing_anchor", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trial_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trial_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trial_will_end_sent", sa.Boolean(), nullable=False),
        sa.Column("current_period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_plan_id", sa.String(length=40), nullable=True),
        sa.Column("pending_plan_version", sa.Integer(), nullable=True),
        sa.Column("pending_quantity", sa.Integer(), nullable=True),
        sa.Column("next_action_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("entitlement_overrides", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'trialing', 'active', 'past_due', 'suspended', 'paused',"
            " 'canceled')",
            name=op.f("ck_subscriptions_status"),
        ),
        sa.CheckConstraint(
            "current_period_end > current_period_start", name=op.f("ck_subscriptions_period")
        ),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_subscriptions_quantity")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_subscriptions")),
    )
    op.create_index(
        "ix_subscriptions_org_id_customer_id",
        "subscriptions",
        ["org_id", "customer_id"],
        unique=False,
    )
    op.create_index(
        "ix_subscriptions_org_id_next_action_at",
        "subscriptions",
        ["org_id", "next_action_at"],
        unique=False,
    )
    op.create_table(
        "test_clocks",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("frozen_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('ready', 'advancing')", name=op.f("ck_test_clocks_status")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_test_clocks")),
    )
    op.create_table(
        "plan_versions",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("pay_in_advance", sa.Boolean(), nullable=False),
        sa.Column("trial_days", sa.Integer(), nullable=False),
        sa.Column("charges", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("entitlements", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_plan_versions_amount")),
        sa.CheckConstraint("trial_days >= 0", name=op.f("ck_plan_versions_trial_days")),
        sa.ForeignKeyConstraint(
            ["org_id", "plan_id"],
            ["plans.org_id", "plans.id"],
            name=op.f("fk_plan_versions_org_id_plans"),
        ),
        sa.PrimaryKeyConstraint("org_id", "plan_id", "version", name=op.f("pk_plan_versions")),
    )
    for table in (
        "customers",
        "meters",
        "plans",
        "plan_versions",
        "coupons",
        "test_clocks",
        "subscriptions",
        "subscription_adjustments",
        "domain_events",
    ):
        for stmt in enable_rls_sql(table):
            op.execute(stmt)


def downgrade() -> None:
    raise NotImplementedError("billing core I cannot be reverted")
