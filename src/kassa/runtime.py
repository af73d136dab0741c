"""The process-wide objects a running Kassa needs, built once from Settings."""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from datetime import timedelta

from kassa.config import Settings
from kassa.core.clock import Clock, SystemClock
from kassa.core.ratelimit import RateLimiter
from kassa.db.engine import Database, Deadline, resolve_urls
from kassa.identity.revocations import SessionRevocations
from kassa.identity.service import AuthPolicy
from kassa.identity.tokens import KeyRing
from kassa.integrations.email import Postman, build_mailer
from kassa.subscriptions import limits


@dataclass
class Runtime:
    settings: Settings
    db: Database
    clock: Clock
    keyring: KeyRing
    limiter: RateLimiter
    policy: AuthPolicy
    postman: Postman
    revocations: SessionRevocations
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        clock = clock or SystemClock()
        limits.configure(settings)
        db = Database(
            resolve_urls(settings),
            pool_size=settings.db_pool_size,
            request_deadline=Deadline(
                settings.request_statement_timeout_ms, settings.request_lock_timeout_ms
            ),
            job_deadline=Deadline(settings.job_statement_timeout_ms, settings.job_lock_timeout_ms),
            request_pool_timeout=settings.request_pool_timeout_ms / 1000,
        )
        access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        keyring = KeyRing(
            settings.secret, clock, access_ttl, timedelta(days=settings.signing_key_rotation_days)
        )
        policy = AuthPolicy(
            access_ttl=access_ttl,
            refresh_ttl=timedelta(days=settings.refresh_token_ttl_days),
            max_failures=settings.login_max_failures,
            lockout=timedelta(seconds=settings.login_lockout_seconds),
        )
        smtp_url = settings.smtp_url.get_secret_value() if settings.smtp_url else None
        postman = Postman(build_mailer(smtp_url, settings.mail_from, settings.data_dir))
        revocations = SessionRevocations(access_ttl, settings.redis_url)
        limiter = RateLimiter(settings.redis_url)
        return cls(settings, db, clock, keyring, limiter, policy, postman, revocations)

    def close(self) -> None:
        self.postman.close()
        self.db.dispose()


def settle_garbage_collector() -> None:
    """Everything imported and built at startup lives as long as the process: freeze it out
    of the collector's sight, so a full collection (which a 10 000-event batch or a billing
    chunk triggers several times) walks only the work's own garbage, not the whole
    application (50-100 ms each). Called by ``serve``, ``worker`` and ``billing run``."""
    gc.collect()
    gc.freeze()
