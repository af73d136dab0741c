from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from kassa.core.context import Role
from kassa.identity import rules

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_role_powers() -> None:
    assert rules.can_grant(Role.OWNER, Role.OWNER)
    assert rules.can_grant(Role.ADMIN, Role.STAFF)
    assert not rules.can_grant(Role.ADMIN, Role.OWNER)
    assert not rules.can_grant(Role.STAFF, Role.VIEWER)
    assert not rules.can_change(Role.ADMIN, Role.OWNER, Role.VIEWER)
    assert not rules.can_change(Role.ADMIN, Role.STAFF, Role.OWNER)
    assert rules.can_change(Role.ADMIN, Role.STAFF, None)
    assert not rules.can_change(Role.VIEWER, Role.VIEWER, None)


@given(st.sampled_from(list(Role)), st.sampled_from(list(Role)))
def test_only_owners_can_make_owners(actor: Role, target: Role) -> None:
    if target is Role.OWNER and rules.can_grant(actor, target):
        assert actor is Role.OWNER
    if rules.can_grant(actor, target):
        assert rules.can_manage_members(actor)


def test_password_policy() -> None:
    assert rules.password_problem("short", "a@b.co") == "must be at least 10 characters"
    same = rules.password_problem("a@example.com", "A@example.com")
    assert same == "must not be the e-mail address"
    assert rules.password_problem("aaaaaaaaaaaa", "a@b.co") == "is too repetitive"
    assert rules.password_problem("x" * 257, "a@b.co") == "must be at most 256 characters"
    assert rules.password_problem("correct horse battery", "a@b.co") is None


@given(st.integers(min_value=1, max_value=20), st.integers(min_value=1, max_value=3600))
def test_the_nth_consecutive_failure_locks(max_failures: int, seconds: int) -> None:
    lockout = timedelta(seconds=seconds)
    failed, locked = 0, None
    for attempt in range(1, max_failures + 1):
        state = rules.after_failed_login(failed, max_failures, lockout, NOW)
        failed, locked = state.failed_logins, state.locked_until
        assert (locked is not None) == (attempt == max_failures)
    assert locked == NOW + lockout
    assert rules.is_locked(locked, NOW + lockout - timedelta(seconds=1))
    assert not rules.is_locked(locked, NOW + lockout)
