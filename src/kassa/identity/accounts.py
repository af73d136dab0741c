"""The account's own e-mail flows: verifying the address, forgetting and resetting the
password. Runs in the request's transaction; mail leaves after it commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.identity import mails, onetime
from kassa.identity.mails import MailContext
from kassa.identity.models import User, UserToken
from kassa.identity.passwords import hash_password
from kassa.identity.revocations import SessionRevocations
from kassa.identity.service import check_password, find_user, revoke_user_sessions
from kassa.identity.tokens import random_token, sha256_hex


def verify_email(session: Session, clock: Clock, token: str) -> User:
    now = clock.now()
    user = onetime.consume(session, token, onetime.VERIFY_EMAIL, now)
    if user.email_verified_at is None:
        user.email_verified_at = now
        session.flush()
    return user


def resend_verification(session: Session, clock: Clock, mail: MailContext, user_id: str) -> bool:
    """Mail a new verification link unless the address is verified; returns whether sent."""
    user = session.get(User, user_id)
    assert user is not None
    if user.email_verified_at is not None:
        return False
    onetime.send_verification(session, mail, user, clock.now())
    return True


def forgot_password(session: Session, clock: Clock, mail: MailContext, email: str) -> None:
    """Mail a reset link if the account exists. Both branches do the same work up to the
    insert (a token drawn and hashed, the same lookups); the mail leaves after the
    response, from a background thread, so the answer's timing says nothing. Beyond the
    per-address mail limit nothing is sent (and the answer is the same)."""
    now = clock.now()
    allowed = mail.may_mail(email)  # counted for every address, known or not
    user = find_user(session, email, lock=True)
    if user is None or not allowed:
        decoy = sha256_hex(random_token(onetime.PREFIXES[onetime.RESET_PASSWORD]))
        session.execute(select(UserToken.id).where(UserToken.token_hash == decoy))
        return
    token = onetime.issue(session, user.id, onetime.RESET_PASSWORD, mail.reset_ttl, now)
    mail.postman.send_after_commit(session, mails.password_reset(mail, user.email, token))


def reset_password(
    session: Session, clock: Clock, revocations: SessionRevocations, token: str, password: str
) -> User:
    """Set the password the token's owner chose; every session of theirs ends."""
    now = clock.now()
    user = onetime.consume(session, token, onetime.RESET_PASSWORD, now)
    check_password(password, user.email)
    user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until = 0, None
    if user.email_verified_at is None:
        user.email_verified_at = now  # the reset link reached this mailbox
    revoke_user_sessions(session, revocations, user.id, now)
    session.flush()
    return user
