"""Pure identity rules: role powers, password policy, lockout arithmetic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kassa.core.context import Role

MIN_PASSWORD = 10
MAX_PASSWORD = 256  # argon2 cost grows with input; refuse megabyte "passwords"
MANAGERS = frozenset({Role.OWNER, Role.ADMIN})


def can_manage_members(actor: Role) -> bool:
    return actor in MANAGERS


def can_grant(actor: Role, target_role: Role) -> bool:
    """Owners grant any role; admins grant any role but owner."""
    if actor is Role.OWNER:
        return True
    return actor is Role.ADMIN and target_role is not Role.OWNER


def can_change(actor: Role, current: Role, new: Role | None) -> bool:
    """May ``actor`` move a member from ``current`` to ``new`` (None = remove)?"""
    if actor is Role.OWNER:
        return True
    if actor is not Role.ADMIN or current is Role.OWNER:
        return False
    return new is None or new is not Role.OWNER


def password_problem(password: str, email: str) -> str | None:
    """Why ``password`` is unacceptable, or None."""
    if len(password) < MIN_PASSWORD:
        return f"must be at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"must be at most {MAX_PASSWORD} characters"
    if password.strip().lower() == email.strip().lower():
        return "must not be the e-mail address"
    if len(set(password)) < 4:
        return "is too repetitive"
    return None


@dataclass(frozen=True)
class LockoutState:
    failed_logins: int
    locked_until: datetime | None


def after_failed_login(
    failed_logins: int, max_failures: int, lockout: timedelta, now: datetime
) -> LockoutState:
    """Count a failure; the ``max_failures``-th in a row locks the account for ``lockout``."""
    failed = failed_logins + 1
    if failed >= max_failures:
        return LockoutState(0, now + lockout)
    return LockoutState(failed, None)


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now
