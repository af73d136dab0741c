"""Housekeeping and readiness checks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, text

from kassa.core import idempotency
from kassa.db.engine import Database
from kassa.db.migrate import current_revision, head_revision
from kassa.identity.onetime import purge_expired as purge_expired_user_tokens
from kassa.identity.service import purge_expired_refresh_tokens
from kassa.orgs.models import Organization

log = structlog.get_logger("kassa.system")


@dataclass(frozen=True)
class PurgeResult:
    refresh_tokens: int
    idempotency_keys: int
    orgs: int
    user_tokens: int = 0


def purge_expired(db: Database, now: datetime) -> PurgeResult:
    """Delete expired refresh tokens, one-time user tokens and idempotency records.

    Idempotency records are tenant-owned (RLS), so they are purged org by org, each in its
    own short transaction scoped to that org: no role ever needs to bypass RLS.
    """
    with db.transaction() as session:
        tokens = purge_expired_refresh_tokens(session, now)
        user_tokens = purge_expired_user_tokens(session, now)
        org_ids = list(session.scalars(select(Organization.id).order_by(Organization.id)))
    keys = 0
    for org_id in org_ids:
        with db.transaction(org_id) as session:
            keys += idempotency.purge_expired(session, org_id, now)
    result = PurgeResult(tokens, keys, len(org_ids), user_tokens)
    log.info(
        "purged_expired",
        refresh_tokens=tokens,
        idempotency_keys=keys,
        orgs=len(org_ids),
        user_tokens=user_tokens,
    )
    return result


@dataclass(frozen=True)
class Readiness:
    database: bool
    migrations: bool
    worker: bool
    detail: dict[str, str]

    @property
    def ready(self) -> bool:
        return self.database and self.migrations and self.worker


def readiness(db: Database, heartbeat_within: timedelta) -> Readiness:
    detail: dict[str, str] = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            revision = current_revision(conn)
            head = head_revision()
            migrations = revision == head
            detail["migrations"] = f"at {revision}" + ("" if migrations else f", head is {head}")
            workers = conn.execute(
                text(
                    "SELECT count(*) FROM procrastinate_workers "
                    "WHERE last_heartbeat > now() - make_interval(secs => :s)"
                ),
                {"s": heartbeat_within.total_seconds()},
            ).scalar_one()
            detail["worker"] = f"{workers} worker(s) with a recent heartbeat"
    except Exception as exc:  # readiness reports, it does not crash
        detail["database"] = f"unreachable: {type(exc).__name__}"
        return Readiness(False, False, False, detail)
    detail["database"] = "ok"
    return Readiness(True, migrations, workers > 0, detail)
