"""Ended sessions, so their access tokens stop working within a second.

Access tokens carry ``sid``, their session's id (the refresh-token family). A session ends
at logout, at a password reset and when a spent refresh token is presented again; each
writes ``revoked_at`` on the family's refresh tokens in the ending transaction. Every API
process keeps the set of sessions ended within the last access-token lifetime (older ones
cannot have a live access token) and reloads it at most ``REFRESH_SECONDS`` after the
previous load, so a revocation reaches every process within that time:

- without Redis, from the database (``refresh_tokens.revoked_at``, a partial index);
- with ``KASSA_REDIS_URL``, from a Redis sorted set (session id → expiry) that the ending
  process writes after its transaction committed, sparing the database that query.

The process that ended a session knows it at once (it adds it to its own set on commit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from kassa.identity.models import RefreshToken

log = structlog.get_logger("kassa.identity")
REFRESH_SECONDS = 1.0
REDIS_KEY = "kassa:revoked_sessions"
_PENDING = "kassa_revoked_after_commit"


class SessionRevocations:
    def __init__(self, access_ttl: timedelta, redis_url: str | None = None) -> None:
        self.access_ttl = access_ttl
        self._redis: Any = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)
        self._lock = threading.Lock()
        self._revoked: frozenset[str] = frozenset()
        self._local: dict[str, float] = {}  # ended here: sid → unix expiry
        self._loaded_at = -1e9

    @property
    def shared_through_redis(self) -> bool:
        return self._redis is not None

    # ---- writing ------------------------------------------------------------------------
    def revoke_after_commit(self, session: Session, sids: Iterable[str], now: datetime) -> None:
        """Announce that ``sids`` ended, once the caller's transaction commits."""
        until = (now + self.access_ttl + timedelta(seconds=60)).timestamp()
        pending: list[tuple[SessionRevocations, str, float]] = session.info.setdefault(_PENDING, [])
        pending.extend((self, sid, until) for sid in sids)

    def _announce(self, sids: dict[str, float]) -> None:
        with self._lock:
            self._local.update(sids)
            self._revoked = self._revoked | frozenset(sids)
        if self._redis is not None:
            try:
                pipe = self._redis.pipeline()
                pipe.zadd(REDIS_KEY, sids)
                pipe.zremrangebyscore(REDIS_KEY, "-inf", time.time())
                pipe.execute()
            except Exception:
                log.exception("session_revocation_not_shared")

    # ---- reading ------------------------------------------------------------------------
    def is_revoked(self, session: Session, sid: str, now: datetime) -> bool:
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            self._reload(session, now)
        return sid in self._revoked

    def _reload(self, session: Session, now: datetime) -> None:
        wall = time.time()
        found: set[str] | None = None
        if self._redis is not None:
            try:
                found = {
                    m.decode() if isinstance(m, bytes) else str(m)
                    for m in self._redis.zrangebyscore(REDIS_KEY, wall, "+inf")
                }
            except Exception:
                log.exception("session_revocations_from_database")  # Redis down: the truth
        if found is None:
            since = now - self.access_ttl - timedelta(seconds=60)
            found = set(
                session.scalars(
                    select(RefreshToken.family_id)
                    .where(RefreshToken.revoked_at.is_not(None), RefreshToken.revoked_at > since)
                    .distinct()
                )
            )
        with self._lock:
            self._local = {sid: exp for sid, exp in self._local.items() if exp > wall}
            self._revoked = frozenset(found) | frozenset(self._local)
            self._loaded_at = time.monotonic()


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    by_owner: dict[int, tuple[SessionRevocations, dict[str, float]]] = {}
    for owner, sid, until in pending:
        by_owner.setdefault(id(owner), (owner, {}))[1][sid] = until
    for owner, sids in by_owner.values():
        owner._announce(sids)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
