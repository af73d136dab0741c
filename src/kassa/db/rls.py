"""Row-level security: the per-transaction org context and the policy DDL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_SET = text("SELECT set_config(:name, :value, true)")


def set_org(session: Session, org_id: str) -> None:
    """Scope the current transaction to ``org_id`` (transaction-local: safe with pooling)."""
    session.execute(_SET, {"name": "app.org_id", "value": org_id})


def set_user(session: Session, user_id: str) -> None:
    """Let the transaction see the acting user's own memberships in any org."""
    session.execute(_SET, {"name": "app.user_id", "value": user_id})


def set_user_and_org(session: Session, user_id: str, org_id: str) -> None:
    """``set_user`` and ``set_org`` in one round trip (every user request does both)."""
    session.execute(
        text("SELECT set_config('app.user_id', :user, true), set_config('app.org_id', :org, true)"),
        {"user": user_id, "org": org_id},
    )


def set_api_key_hash(session: Session, key_hash: str) -> None:
    """Let the transaction find the one API key row whose hash was presented."""
    session.execute(_SET, {"name": "app.api_key_hash", "value": key_hash})


def set_invitation_token_hash(session: Session, token_hash: str) -> None:
    """Let the transaction find the one invitation whose token hash was presented."""
    session.execute(_SET, {"name": "app.invitation_token_hash", "value": token_hash})


ORG_MATCH = "org_id = current_setting('app.org_id', true)"


def enable_rls_sql(table: str, *extra_using: str) -> list[str]:
    """DDL that enables and forces RLS on ``table`` with the org policy (plus alternatives)."""
    using = " OR ".join([ORG_MATCH, *extra_using])
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_org_isolation ON {table} USING ({using}) WITH CHECK ({ORG_MATCH})",
    ]
