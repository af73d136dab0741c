"""identity: invitations, one-time user tokens, verified e-mails, idempotency principals

- ``invitations`` (org-owned, RLS): adding a member is an invitation that the invitee
  accepts with a one-time token (stored as SHA-256). Like API keys, the one row whose token
  hash the caller presented is visible before any organization is known.
- ``user_tokens`` (platform-level): one-time tokens for e-mail verification and password
  reset, stored as SHA-256, expiring, spent once.
- ``users.email_verified_at``.
- ``idempotency_keys.principal``: the member or API key a stored response belongs to; it
  is replayed to nobody else.
- ``refresh_tokens`` revoked recently are read by every process's session-revocation
  cache once a second: a partial index on ``revoked_at``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kassa.db.rls import enable_rls_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
INVITATION_TOKEN = "token_hash = current_setting('app.invitation_token_hash', true)"  # noqa: S105 - a policy, not a secret


def upgrade() -> None:
    op.add_column("users", sa.Column("email_verified_at", TS))
    op.add_column("idempotency_keys", sa.Column("principal", sa.String(40)))
    op.create_index(
        "ix_refresh_tokens_revoked_at", "refresh_tokens", ["revoked_at"],
        postgresql_where=sa.text("revoked_at IS NOT NULL"),
    )  # fmt: skip
    op.create_table(
        "invitations",
        sa.Column("org_id", sa.String(40), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("invited_by", sa.String(40)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("accepted_at", TS),
        sa.Column("accepted_by", sa.String(40)),
        sa.Column("revoked_at", TS),
        sa.CheckConstraint("role IN ('owner', 'admin', 'staff', 'viewer')", name="role"),
    )
    op.create_index("ix_invitations_org_id_email", "invitations", ["org_id", "email"])
    op.create_table(
        "user_tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
        sa.CheckConstraint("purpose IN ('verify_email', 'reset_password')", name="purpose"),
    )
    op.create_index("ix_user_tokens_user_id", "user_tokens", ["user_id"])
    op.create_index("ix_user_tokens_expires_at", "user_tokens", ["expires_at"])
    for stmt in enable_rls_sql("invitations", INVITATION_TOKEN):
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table("user_tokens")
    op.drop_table("invitations")
    op.drop_index("ix_refresh_tokens_revoked_at", table_name="refresh_tokens")
    op.drop_column("idempotency_keys", "principal")
    op.drop_column("users", "email_verified_at")
