"""One-time tokens mailed to users: e-mail verification and password reset.

A token is 40 random base62 characters (≈238 bits); only its SHA-256 is stored. It works
once and until it expires. Issuing a new token of a purpose spends the user's older ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from kassa.core.errors import ValidationFailed, field_error
from kassa.core.ids import new_id
from kassa.identity import mails
from kassa.identity.mails import MailContext
from kassa.identity.models import User, UserToken
from kassa.identity.tokens import random_token, sha256_hex

VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose name, not a secret
PREFIXES = {VERIFY_EMAIL: "ev_", RESET_PASSWORD: "pr_"}


def invalid_token() -> ValidationFailed:
    """422 naming ``token`` (one answer for unknown, expired and spent tokens)."""
    message = "is invalid, expired or already used; ask for a new link"
    return field_error("token", message, code="invalid_or_expired_token")


def issue(session: Session, user_id: str, purpose: str, ttl: timedelta, now: datetime) -> str:
    session.execute(
        update(UserToken)
        .where(
            UserToken.user_id == user_id, UserToken.purpose == purpose, UserToken.used_at.is_(None)
        )
        .values(used_at=now)
    )
    token = random_token(PREFIXES[purpose])
    session.add(
        UserToken(
            id=new_id("utk"),
            user_id=user_id,
            purpose=purpose,
            token_hash=sha256_hex(token),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    session.flush()
    return token


def consume(session: Session, token: str, purpose: str, now: datetime) -> User:
    """The user the token was issued to; the token is spent. Else 422 ``token``."""
    row = session.scalars(
        select(UserToken)
        .where(UserToken.token_hash == sha256_hex(token), UserToken.purpose == purpose)
        .with_for_update()
    ).one_or_none()
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise invalid_token()
    row.used_at = now
    user = session.get(User, row.user_id, with_for_update=True)
    assert user is not None
    session.flush()
    return user


def send_verification(session: Session, mail: MailContext, user: User, now: datetime) -> None:
    token = issue(session, user.id, VERIFY_EMAIL, mail.verification_ttl, now)
    mail.postman.send_after_commit(session, mails.verification(mail, user.email, token))


def purge_expired(session: Session, now: datetime) -> int:
    """Delete one-time tokens past their expiry (spent or not); returns how many."""
    result = session.execute(delete(UserToken).where(UserToken.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]
