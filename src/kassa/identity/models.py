from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from kassa.db.base import Base, TenantOwned


class User(Base):
    """A person who can log in. Platform-level (no RLS): one user may belong to many orgs."""

    __tablename__ = "users"
    __table_args__ = {"info": {"platform": True}}

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    email_verified_at: Mapped[datetime | None]


class Membership(TenantOwned, Base):
    """A user's role in one org. RLS: the org's rows, plus the acting user's own rows
    (so login can list a user's organizations before one is chosen)."""

    __tablename__ = "memberships"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'staff', 'viewer')", name="role"),
        Index("ix_memberships_user_id", "user_id"),
        {"info": {"rls_extra": ["user_id = current_setting('app.user_id', true)"]}},
    )

    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]


class ApiKey(TenantOwned, Base):
    """An org's server key, stored as SHA-256 of the full key. RLS: the org's rows, plus the
    one row whose hash the caller presented (authentication happens before the org is known)."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("mode IN ('test', 'live')", name="mode"),
        {"info": {"rls_extra": ["key_hash = current_setting('app.api_key_hash', true)"]}},
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(4))
    prefix: Mapped[str] = mapped_column(String(24))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class RefreshToken(Base):
    """One issued refresh token. Platform-level (presented before any org is known).
    Tokens of one login form a family; reuse of a rotated token revokes the family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_family_id", "family_id"),
        Index("ix_refresh_tokens_expires_at", "expires_at"),
        Index(
            "ix_refresh_tokens_revoked_at",
            "revoked_at",
            postgresql_where=text("revoked_at IS NOT NULL"),
        ),
        {"info": {"platform": True}},
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"))
    org_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("organizations.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SigningKey(Base):
    """A JWT signing key pair (ES256). The private key is PEM encrypted with the secret key.
    Platform-level. Retired keys stay published until every token they signed expired."""

    __tablename__ = "signing_keys"
    __table_args__ = {"info": {"platform": True}}

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(10))
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    publish_until: Mapped[datetime | None]


class Invitation(TenantOwned, Base):
    """An invitation to join an org with a role, redeemed with a one-time token (stored as
    SHA-256). Until accepted no membership exists. RLS: the org's rows, plus the one row
    whose token hash the invitee presented (acceptance happens before the org is known)."""

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'staff', 'viewer')", name="role"),
        Index("ix_invitations_org_id_email", "org_id", "email"),
        {
            "info": {
                "rls_extra": ["token_hash = current_setting('app.invitation_token_hash', true)"]
            }
        },
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(10))
    name: Mapped[str | None] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by: Mapped[str | None] = mapped_column(String(40))
    revoked_at: Mapped[datetime | None]


class UserToken(Base):
    """A one-time token mailed to a user (e-mail verification, password reset), stored as
    SHA-256. Platform-level: it is presented before anything else is known."""

    __tablename__ = "user_tokens"
    __table_args__ = (
        CheckConstraint("purpose IN ('verify_email', 'reset_password')", name="purpose"),
        Index("ix_user_tokens_user_id", "user_id"),
        Index("ix_user_tokens_expires_at", "expires_at"),
        {"info": {"platform": True}},
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
