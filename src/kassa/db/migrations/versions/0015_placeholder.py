"""e-invoicing: organization bank account, buyer reference, frozen documents (issue 13)

Placeholder in the revision chain, filled by the change that needs it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
