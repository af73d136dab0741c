"""money columns bigint: plan prices, coupon amounts and prorations hold any accepted amount

The API accepts amounts up to ``kassa.core.money.MAX_AMOUNT`` (10**12 minor units), but
three money columns were ``integer`` (at most 2 147 483 647): a plan's ``amount``, a
coupon's ``amount_off`` and a subscription adjustment's ``amount`` (a proration of a plan's
fee). A plan of 21 474 836.48 EUR answered 500. Every other money column is already
``bigint``; these three join them. (Widening rewrites the tables; they are small catalog
tables and the not-yet-invoiced adjustments.)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = (
    ("plan_versions", "amount", False),
    ("coupons", "amount_off", True),
    ("subscription_adjustments", "amount", False),
)


def upgrade() -> None:
    for table, column, nullable in COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.BigInteger(),
            existing_type=sa.Integer(),
            existing_nullable=nullable,
        )


def downgrade() -> None:
    for table, column, nullable in COLUMNS:
        op.alter_column(
            table,
            column,
            type_=sa.Integer(),
            existing_type=sa.BigInteger(),
            existing_nullable=nullable,
        )
