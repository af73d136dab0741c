"""e-invoicing: the organization's bank account, the customer's buyer reference

EN 16931 e-invoices name the payment means: with the organization's IBAN (and BIC) an invoice
says "SEPA credit transfer" (UNCL4461 code 58) to that account, instead of free-text
instructions. XRechnung needs the buyer reference (BT-10, e.g. a Leitweg-ID) of each
customer. Both are copied into an invoice's seller and buyer blocks at finalization (those
are JSON already), so issued documents never change and invoices need no new column.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organizations", sa.Column("iban", sa.String(length=34), nullable=True))
    op.add_column("organizations", sa.Column("bic", sa.String(length=11), nullable=True))
    op.add_column("customers", sa.Column("buyer_reference", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("customers", "buyer_reference")
    op.drop_column("organizations", "bic")
    op.drop_column("organizations", "iban")
