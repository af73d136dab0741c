"""due work found in the order it is taken

A billing run locks its chunks with ``ORDER BY next_action_at, id LIMIT n FOR UPDATE SKIP
LOCKED`` (due subscriptions) and ``ORDER BY finalize_at, id`` (due drafts). On a billing
day most rows share one ``next_action_at`` / ``finalize_at``; with indexes ending at that
column PostgreSQL read and sorted every due row of the organization for each chunk (about
90 s of a 225 s run over 100 000 subscriptions). Ending the indexes with ``id`` lets the
``LIMIT`` stop after the rows it takes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_subscriptions_org_id_next_action_at", table_name="subscriptions")
    op.create_index(
        "ix_subscriptions_org_id_next_action_at_id", "subscriptions",
        ["org_id", "next_action_at", "id"],
    )  # fmt: skip
    op.drop_index("ix_invoices_org_id_finalize_at", table_name="invoices")
    op.create_index(
        "ix_invoices_org_id_finalize_at_id", "invoices", ["org_id", "finalize_at", "id"],
        postgresql_where="status = 'draft'",
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_invoices_org_id_finalize_at_id", table_name="invoices")
    op.create_index(
        "ix_invoices_org_id_finalize_at", "invoices", ["org_id", "finalize_at"],
        postgresql_where="status = 'draft'",
    )  # fmt: skip
    op.drop_index("ix_subscriptions_org_id_next_action_at_id", table_name="subscriptions")
    op.create_index(
        "ix_subscriptions_org_id_next_action_at", "subscriptions", ["org_id", "next_action_at"]
    )
