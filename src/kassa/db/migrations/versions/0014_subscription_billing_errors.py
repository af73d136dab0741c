"""subscriptions: the billing error a run recorded, and when to retry

A billing run isolates failures: a subscription whose billing still fails on its own is
skipped and recorded (``billing_error``: code, message, first and last failure, attempts,
next attempt) and not tried again before ``billing_retry_at`` (backoff). A success clears
both. Both columns are nullable and empty for every existing row: adding them rewrites
nothing.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("billing_error", postgresql.JSONB(), nullable=True))
    op.add_column(
        "subscriptions",
        sa.Column("billing_retry_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("subscriptions", "billing_retry_at")
    op.drop_column("subscriptions", "billing_error")
