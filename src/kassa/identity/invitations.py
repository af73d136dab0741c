"""Invitations: the only way into an organization besides founding one.

An owner or admin invites an e-mail address with a role; the address receives a one-time
token (only its SHA-256 is stored) that expires after ``KASSA_INVITATION_TTL_HOURS``.
Nothing else happens until the invitee accepts: no user is created, no membership exists.
Accepting (``POST /v1/invitations/accept``):

- an address with no account: the invitee chooses their own password there; the account
  is created with the address verified (the token reached the mailbox);
- an address with an account: only while logged in as that account (its access token as
  Bearer), so nobody is added to an organization without their consent.

No route sets another person's password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.context import Principal, Role
from kassa.core.errors import field_error
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.db import rls
from kassa.identity import mails, onetime, rules
from kassa.identity.errors import (
    AlreadyMember,
    InsufficientRole,
    InvitationForAnotherAccount,
    InvitationNotFound,
    InvitationNotPending,
    InvitationPending,
    LoginRequired,
)
from kassa.identity.mails import MailContext
from kassa.identity.models import Invitation, Membership, User
from kassa.identity.passwords import hash_password
from kassa.identity.revocations import SessionRevocations
from kassa.identity.service import (
    AuthPolicy,
    Issued,
    add_membership,
    authenticate,
    check_password,
    find_user,
    issue_tokens,
    normalize_email,
)
from kassa.identity.tokens import KeyRing, random_token, sha256_hex
from kassa.orgs import service as orgs
from kassa.orgs.models import Organization

TOKEN_PREFIX = "ivt_"  # noqa: S105 - a prefix, not a secret


def status(invitation: Invitation, now: datetime) -> str:
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expires_at <= now:
        return "expired"
    return "pending"


def _require_manager(principal: Principal, role: Role | None = None) -> None:
    if principal.is_api_key or not rules.can_manage_members(principal.role):
        raise InsufficientRole(
            detail="Only owners and admins (logged in, not API keys) may do this."
        )
    if role is not None and not rules.can_grant(principal.role, role):
        raise InsufficientRole(detail=f"An {principal.role} cannot grant the role {role}.")


def _send(session: Session, mail: MailContext, principal: Principal, inv: Invitation) -> str:
    """Draw a fresh token (the previous one dies) and mail it after commit."""
    token = random_token(TOKEN_PREFIX)
    inv.token_hash = sha256_hex(token)
    org = orgs.load(session, principal.org_id)
    inviter = session.get(User, principal.user_id) if principal.user_id else None
    message = mails.invitation(
        mail, inv.email, org.name, inv.role, inviter.email if inviter else None, token
    )
    mail.postman.send_after_commit(session, message)
    return token


def invite(
    session: Session,
    principal: Principal,
    mail: MailContext,
    clock: Clock,
    *,
    email: str,
    role: Role,
    name: str | None,
) -> Invitation:
    _require_manager(principal, role)
    now = clock.now()
    email = normalize_email(email)
    user = find_user(session, email)
    if user is not None and _membership(session, principal.org_id, user.id) is not None:
        raise AlreadyMember()
    for other in session.scalars(
        select(Invitation)
        .where(Invitation.org_id == principal.org_id, Invitation.email == email)
        .with_for_update()
    ):
        if status(other, now) == "pending":
            raise InvitationPending(
                detail=f"{other.id} is still pending; resend or revoke it.",
                extra={"invitation": other.id},
            )
    inv = Invitation(
        org_id=principal.org_id,
        id=new_id("ivt"),
        email=email,
        role=role.value,
        name=name,
        invited_by=principal.user_id,
        created_at=now,
        sent_at=now,
        expires_at=now + mail.invitation_ttl,
    )
    _send(session, mail, principal, inv)
    session.add(inv)
    session.flush()
    return inv


def _membership(session: Session, org_id: str, user_id: str) -> Membership | None:
    return session.scalars(
        select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    ).one_or_none()


def get_invitation(
    session: Session, principal: Principal, invitation_id: str, *, lock: bool = False
) -> Invitation:
    _require_manager(principal)
    if not looks_like_id(invitation_id, "ivt"):
        raise InvitationNotFound()
    stmt = select(Invitation).where(
        Invitation.org_id == principal.org_id, Invitation.id == invitation_id
    )
    inv = session.scalars(stmt.with_for_update() if lock else stmt).one_or_none()
    if inv is None:
        raise InvitationNotFound()
    return inv


def list_invitations(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[Invitation], bool, str | None]:
    _require_manager(principal)
    stmt = select(Invitation).where(Invitation.org_id == principal.org_id)
    return paginate(session, stmt, Invitation.id, limit, cursor)


def revoke(session: Session, principal: Principal, invitation_id: str, now: datetime) -> Invitation:
    """A pending (or expired) invitation is revoked; revoking again changes nothing."""
    inv = get_invitation(session, principal, invitation_id, lock=True)
    _require_manager(principal, Role(inv.role))
    if inv.accepted_at is not None:
        raise InvitationNotPending(detail="It was accepted; remove the member instead.")
    if inv.revoked_at is None:
        inv.revoked_at = now
        session.flush()
    return inv


def resend(
    session: Session, principal: Principal, mail: MailContext, clock: Clock, invitation_id: str
) -> Invitation:
    """Mail a new token (the old one stops working) and restart the expiry."""
    inv = get_invitation(session, principal, invitation_id, lock=True)
    _require_manager(principal, Role(inv.role))
    if inv.accepted_at is not None or inv.revoked_at is not None:
        raise InvitationNotPending(detail=f"It is {status(inv, clock.now())}; invite again.")
    now = clock.now()
    _send(session, mail, principal, inv)
    inv.sent_at, inv.expires_at = now, now + mail.invitation_ttl
    session.flush()
    return inv


@dataclass(frozen=True)
class Accepted:
    invitation: Invitation
    org: Organization
    user: User
    issued: Issued


def accept(
    session: Session,
    keyring: KeyRing,
    policy: AuthPolicy,
    clock: Clock,
    revocations: SessionRevocations,
    *,
    token: str,
    bearer: str | None,
    password: str | None,
    name: str | None,
) -> Accepted:
    now = clock.now()
    caller = None
    if bearer:
        caller = authenticate(session, keyring, clock, revocations, bearer)
        if caller.user_id is None:
            raise InvitationForAnotherAccount(detail="API keys cannot accept invitations.")
    token_hash = sha256_hex(token)
    rls.set_invitation_token_hash(session, token_hash)
    inv = session.scalars(
        select(Invitation).where(Invitation.token_hash == token_hash).with_for_update()
    ).one_or_none()
    if inv is None or status(inv, now) != "pending":
        raise onetime.invalid_token()
    user = find_user(session, inv.email, lock=True)
    if user is not None and user.password_hash is not None:
        if caller is None:
            raise LoginRequired()
        if caller.user_id != user.id:
            raise InvitationForAnotherAccount()
    elif caller is not None:
        raise InvitationForAnotherAccount()
    else:
        if password is None:
            raise field_error("password", "is required to create your account")
        check_password(password, inv.email)
        if user is None:
            user = User(
                id=new_id("usr"),
                email=inv.email,
                name=name or inv.name,
                failed_logins=0,
                created_at=now,
            )
            session.add(user)
        elif name:
            user.name = name
        user.password_hash = hash_password(password)
        user.email_verified_at = user.email_verified_at or now  # the token reached the mailbox
    rls.set_user_and_org(session, user.id, inv.org_id)
    if _membership(session, inv.org_id, user.id) is not None:
        raise AlreadyMember()
    inv.accepted_at, inv.accepted_by = now, user.id
    add_membership(session, inv.org_id, user.id, Role(inv.role), now)
    issued = issue_tokens(session, keyring, policy, user.id, inv.org_id, now)
    return Accepted(inv, orgs.load(session, inv.org_id), user, issued)
