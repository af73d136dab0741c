"""Sign-up, login, token rotation and request authentication.

Runs inside the transaction the request (or CLI) boundary opened; flushes, never commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.context import Principal, Role
from kassa.core.errors import field_error
from kassa.core.ids import new_id
from kassa.db import rls
from kassa.identity import mails, onetime, rules
from kassa.identity.errors import (
    AccountLocked,
    InsufficientRole,
    InvalidApiKey,
    InvalidCredentials,
    InvalidToken,
    NoMembership,
    OrgRequired,
    RefreshTokenReused,
)
from kassa.identity.mails import MailContext
from kassa.identity.models import ApiKey, Membership, RefreshToken, User
from kassa.identity.passwords import hash_password, needs_rehash, verify_password
from kassa.identity.revocations import SessionRevocations
from kassa.identity.tokens import KeyRing, random_token, sha256_hex
from kassa.orgs import service as orgs
from kassa.orgs.models import Organization

API_KEY_PREFIXES = ("sk_test_", "sk_live_")
REFRESH_PREFIX = "rt_"
_LAST_USED_GRANULARITY = timedelta(seconds=60)


@dataclass(frozen=True)
class AuthPolicy:
    access_ttl: timedelta
    refresh_ttl: timedelta
    max_failures: int
    lockout: timedelta


@dataclass(frozen=True)
class Issued:
    access_token: str
    refresh_token: str
    expires_in: int


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_password(password: str, email: str, field: str = "password") -> None:
    problem = rules.password_problem(password, email)
    if problem:
        raise field_error(field, problem, code="weak_password")


def create_user(
    session: Session, email: str, password: str | None, name: str | None, now: datetime
) -> User:
    user = User(
        id=new_id("usr"),
        email=normalize_email(email),
        name=name,
        password_hash=hash_password(password) if password else None,
        failed_logins=0,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, email: str, *, lock: bool = False) -> User | None:
    stmt = select(User).where(User.email == normalize_email(email))
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def add_membership(
    session: Session, org_id: str, user_id: str, role: Role, now: datetime
) -> Membership:
    rls.set_org(session, org_id)
    membership = Membership(org_id=org_id, user_id=user_id, role=role.value, created_at=now)
    session.add(membership)
    session.flush()
    return membership


def issue_tokens(
    session: Session, keyring: KeyRing, policy: AuthPolicy, user_id: str, org_id: str,
    now: datetime, family_id: str | None = None,
) -> Issued:  # fmt: skip
    """A new access token and a refresh token in ``family_id`` (a new family by default)."""
    refresh = random_token(REFRESH_PREFIX, 48)
    family_id = family_id or new_id("rtf")
    session.add(
        RefreshToken(
            id=new_id("rt"),
            token_hash=sha256_hex(refresh),
            family_id=family_id,
            user_id=user_id,
            org_id=org_id,
            created_at=now,
            expires_at=now + policy.refresh_ttl,
        )
    )
    session.flush()
    access = keyring.issue_access_token(session, user_id, org_id, family_id)
    return Issued(access, refresh, int(policy.access_ttl.total_seconds()))


def signup(
    session: Session,
    keyring: KeyRing,
    policy: AuthPolicy,
    clock: Clock,
    mail: MailContext,
    *,
    org_name: str,
    email: str,
    password: str,
    name: str | None = None,
    country: str | None = None,
    currency: str | None = None,
    timezone: str | None = None,
) -> tuple[Organization, User, Issued] | None:
    """Create an organization with its owner, a new user, and mail them a verification link.

    An e-mail that already has an account gets no new organization and its password is not
    checked (signup is no password oracle): the account's owner is mailed instead (how to
    log in, create another organization, or reset the password), and None is returned."""
    now = clock.now()
    user = find_user(session, email, lock=True)
    if user is not None:
        verify_password(None, password)  # the cost of the other branch's hashing
        if mail.may_mail(user.email):
            mail.postman.send_after_commit(session, mails.signup_existing(mail, user.email))
        return None
    check_password(password, email)
    user = create_user(session, email, password, name, now)
    org = orgs.create_org(
        session, name=org_name, now=now, country=country, currency=currency, timezone=timezone
    )
    add_membership(session, org.id, user.id, Role.OWNER, now)
    onetime.send_verification(session, mail, user, now)
    return org, user, issue_tokens(session, keyring, policy, user.id, org.id, now)


def create_org_for_user(
    session: Session,
    keyring: KeyRing,
    policy: AuthPolicy,
    clock: Clock,
    principal: Principal,
    *,
    org_name: str,
    country: str | None,
    currency: str | None,
    timezone: str | None,
) -> tuple[Organization, User, Issued]:
    """A logged-in member creates another organization, of which they become the owner
    (what signup did for existing e-mails, now behind authentication)."""
    if principal.user_id is None:
        raise InsufficientRole(detail="API keys cannot create organizations; log in.")
    now = clock.now()
    user = session.get(User, principal.user_id)
    assert user is not None
    org = orgs.create_org(
        session, name=org_name, now=now, country=country, currency=currency, timezone=timezone
    )
    add_membership(session, org.id, user.id, Role.OWNER, now)
    return org, user, issue_tokens(session, keyring, policy, user.id, org.id, now)


def login(
    session: Session, keyring: KeyRing, policy: AuthPolicy, clock: Clock, *,
    email: str, password: str, org_id: str | None,
) -> Issued:  # fmt: skip
    now = clock.now()
    user = find_user(session, email, lock=True)
    if user is None:
        verify_password(None, password)  # same cost as a real check
        raise InvalidCredentials()
    if rules.is_locked(user.locked_until, now):
        assert user.locked_until is not None
        retry = max(1, int((user.locked_until - now).total_seconds()))
        raise AccountLocked(detail=f"Try again in {retry} s.", headers={"Retry-After": str(retry)})
    if not verify_password(user.password_hash, password):
        state = rules.after_failed_login(
            user.failed_logins, policy.max_failures, policy.lockout, now
        )
        user.failed_logins, user.locked_until = state.failed_logins, state.locked_until
        session.flush()
        raise InvalidCredentials()
    assert user.password_hash is not None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now

    rls.set_user(session, user.id)
    memberships = session.scalars(
        select(Membership).where(Membership.user_id == user.id).order_by(Membership.created_at)
    ).all()
    if org_id is not None:
        memberships = [m for m in memberships if m.org_id == org_id]
        if not memberships:
            raise NoMembership()
    if not memberships:
        raise NoMembership(detail="This account belongs to no organization.")
    if len(memberships) > 1:
        raise OrgRequired(
            detail="Pass `org` with one of your organization ids.",
            errors=[],
            extra={"orgs": [m.org_id for m in memberships]},
        )
    return issue_tokens(session, keyring, policy, user.id, memberships[0].org_id, now)


def _revoke_family(
    session: Session, revocations: SessionRevocations, family_id: str, now: datetime
) -> None:
    """End a session: its refresh tokens now, its access tokens once this commits."""
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    revocations.revoke_after_commit(session, [family_id], now)


def revoke_user_sessions(
    session: Session, revocations: SessionRevocations, user_id: str, now: datetime
) -> int:
    """End every session of a user (password reset); returns how many were live."""
    families = session.scalars(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(RefreshToken.family_id)
    ).all()
    live = set(families)
    revocations.revoke_after_commit(session, live, now)
    return len(live)


def refresh(
    session: Session,
    keyring: KeyRing,
    policy: AuthPolicy,
    clock: Clock,
    revocations: SessionRevocations,
    token: str,
) -> Issued:
    """Rotate: the presented token is spent and a new pair issued in the same family.
    Presenting a spent token again means it leaked: the whole family is revoked."""
    now = clock.now()
    row = session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token)).with_for_update()
    ).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise InvalidToken(detail="Refresh token is invalid, expired or revoked.")
    if row.rotated_at is not None:
        _revoke_family(session, revocations, row.family_id, now)
        raise RefreshTokenReused()
    rls.set_user(session, row.user_id)
    membership = session.scalars(
        select(Membership).where(Membership.org_id == row.org_id, Membership.user_id == row.user_id)
    ).one_or_none()
    if membership is None:
        _revoke_family(session, revocations, row.family_id, now)
        raise InvalidToken(detail="You are no longer a member of this organization.")
    row.rotated_at = now
    return issue_tokens(session, keyring, policy, row.user_id, row.org_id, now, row.family_id)


def logout(session: Session, clock: Clock, revocations: SessionRevocations, token: str) -> None:
    """End the session the refresh token belongs to (unknown tokens are ignored)."""
    row = session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == sha256_hex(token))
    ).one_or_none()
    if row is not None:
        _revoke_family(session, revocations, row.family_id, clock.now())


def authenticate(
    session: Session, keyring: KeyRing, clock: Clock, revocations: SessionRevocations, token: str
) -> Principal:
    """Resolve a bearer token (JWT or API key) and scope the transaction to its org."""
    now = clock.now()
    if token.startswith(API_KEY_PREFIXES):
        key_hash = sha256_hex(token)
        rls.set_api_key_hash(session, key_hash)
        key = session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one_or_none()
        if key is None or key.revoked_at is not None:
            raise InvalidApiKey()
        rls.set_org(session, key.org_id)
        org = orgs.load(session, key.org_id)
        if org.mode != key.mode:
            raise InvalidApiKey(
                detail=f"This is a {key.mode} key; the organization is in {org.mode} mode."
            )
        if key.last_used_at is None or key.last_used_at < now - _LAST_USED_GRANULARITY:
            session.execute(
                update(ApiKey)
                .where(ApiKey.org_id == key.org_id, ApiKey.id == key.id)
                .values(last_used_at=now)
            )
        return Principal(org_id=key.org_id, role=Role.ADMIN, api_key_id=key.id)

    claims = keyring.verify_access_token(session, token)
    user_id, org_id = str(claims["sub"]), str(claims["org"])
    sid = claims.get("sid")
    if sid is not None and revocations.is_revoked(session, str(sid), now):
        raise InvalidToken(detail="This session has ended (logout, password reset or reuse).")
    rls.set_user_and_org(session, user_id, org_id)
    membership = session.scalars(
        select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    ).one_or_none()
    if membership is None:
        raise InvalidToken(detail="You are no longer a member of this organization.")
    return Principal(org_id=org_id, role=Role(membership.role), user_id=user_id)


def purge_expired_refresh_tokens(session: Session, now: datetime) -> int:
    """Delete refresh tokens past their expiry (spent or not); returns how many."""
    result = session.execute(delete(RefreshToken).where(RefreshToken.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]
