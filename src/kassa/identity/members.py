"""Members and API keys of the acting principal's organization."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.context import Principal, Role
from kassa.core.errors import field_error
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.identity import rules
from kassa.identity.errors import (
    ApiKeyNotFound,
    InsufficientRole,
    LastOwner,
    MemberNotFound,
)
from kassa.identity.models import ApiKey, Membership, User
from kassa.identity.tokens import random_token, sha256_hex
from kassa.orgs import service as orgs

MemberRow = tuple[Membership, User]


def _require_manager(principal: Principal) -> None:
    if principal.is_api_key or not rules.can_manage_members(principal.role):
        raise InsufficientRole(
            detail="Only owners and admins (logged in, not API keys) may do this."
        )


def _membership(session: Session, org_id: str, user_id: str) -> Membership | None:
    return session.scalars(
        select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id)
    ).one_or_none()


def get_member(session: Session, principal: Principal, user_id: str) -> MemberRow:
    if not looks_like_id(user_id, "usr"):
        raise MemberNotFound()
    row = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.org_id == principal.org_id, Membership.user_id == user_id)
    ).one_or_none()
    if row is None:
        raise MemberNotFound()
    return row[0], row[1]


def list_members(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[MemberRow], bool, str | None]:
    memberships, has_more, next_cursor = paginate(
        session,
        select(Membership).where(Membership.org_id == principal.org_id),
        Membership.user_id,
        limit,
        cursor,
    )
    users = {
        u.id: u
        for u in session.scalars(select(User).where(User.id.in_([m.user_id for m in memberships])))
    }
    return [(m, users[m.user_id]) for m in memberships], has_more, next_cursor


def _owner_count(session: Session, org_id: str) -> int:
    owners = session.scalars(
        select(Membership.user_id)
        .where(Membership.org_id == org_id, Membership.role == Role.OWNER.value)
        .with_for_update()
    ).all()
    return len(owners)


def change_member(
    session: Session, principal: Principal, user_id: str, role: Role | None
) -> MemberRow | None:
    """Set a member's role, or remove them (``role=None``). The last owner stays."""
    _require_manager(principal)
    membership, user = get_member(session, principal, user_id)
    current = Role(membership.role)
    if not rules.can_change(principal.role, current, role):
        raise InsufficientRole(detail=f"An {principal.role} cannot change an {current}.")
    if (
        current is Role.OWNER
        and role is not Role.OWNER
        and _owner_count(session, principal.org_id) <= 1
    ):
        raise LastOwner()
    if role is None:
        session.delete(membership)
        session.flush()
        return None
    membership.role = role.value
    session.flush()
    return membership, user


def create_api_key(
    session: Session, principal: Principal, name: str, mode: str | None, now: datetime
) -> tuple[ApiKey, str]:
    """A new key; the full secret is returned once and only its hash is kept."""
    _require_manager(principal)
    org = orgs.load(session, principal.org_id)
    mode = mode or org.mode
    if mode != org.mode:
        raise field_error("mode", f"the organization is in {org.mode} mode", code="mode_mismatch")
    secret = random_token(f"sk_{mode}_")
    key = ApiKey(
        org_id=principal.org_id,
        id=new_id("key"),
        name=name,
        mode=mode,
        prefix=secret[:12],
        key_hash=sha256_hex(secret),
        created_by=principal.user_id,
        created_at=now,
    )
    session.add(key)
    session.flush()
    return key, secret


def list_api_keys(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[ApiKey], bool, str | None]:
    _require_manager(principal)
    return paginate(
        session, select(ApiKey).where(ApiKey.org_id == principal.org_id), ApiKey.id, limit, cursor
    )


def get_api_key(session: Session, principal: Principal, key_id: str) -> ApiKey:
    if not looks_like_id(key_id, "key"):
        raise ApiKeyNotFound()
    key = session.scalars(
        select(ApiKey).where(ApiKey.org_id == principal.org_id, ApiKey.id == key_id)
    ).one_or_none()
    if key is None:
        raise ApiKeyNotFound()
    return key


def revoke_api_key(session: Session, principal: Principal, key_id: str, now: datetime) -> ApiKey:
    _require_manager(principal)
    key = get_api_key(session, principal, key_id)
    if key.revoked_at is None:
        key.revoked_at = now
        session.flush()
    return key
