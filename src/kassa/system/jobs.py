"""Housekeeping tasks. Thin: they call service functions."""

from __future__ import annotations

import procrastinate

from kassa.core.metrics import JOBS
from kassa.runtime import Runtime
from kassa.system import service

PURGE_TASK = "kassa.system.purge_expired"
ROTATE_TASK = "kassa.system.rotate_signing_key"


def register(app: procrastinate.App, rt: Runtime) -> None:
    @app.periodic(cron=rt.settings.purge_cron, periodic_id="purge_expired")
    @app.task(name=PURGE_TASK, queueing_lock=PURGE_TASK, queue="housekeeping")
    def purge_expired(timestamp: int) -> dict[str, int]:
        try:
            result = service.purge_expired(rt.db, rt.clock.now())
        except Exception:
            JOBS.labels(PURGE_TASK, "failed").inc()
            raise
        JOBS.labels(PURGE_TASK, "succeeded").inc()
        return {
            "refresh_tokens": result.refresh_tokens,
            "idempotency_keys": result.idempotency_keys,
        }

    @app.periodic(cron="17 3 * * *", periodic_id="rotate_signing_key")
    @app.task(name=ROTATE_TASK, queueing_lock=ROTATE_TASK, queue="housekeeping")
    def rotate_signing_key(timestamp: int) -> None:
        """Daily: make a new signing key once the active one is older than the rotation age."""
        with rt.db.transaction() as session:
            rt.keyring.ensure_active(session)
        JOBS.labels(ROTATE_TASK, "succeeded").inc()
