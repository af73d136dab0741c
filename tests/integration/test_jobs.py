from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.config import Settings
from kassa.core import idempotency
from kassa.identity.models import RefreshToken
from kassa.runtime import Runtime
from kassa.subscriptions.jobs import ADVANCE_TASK
from kassa.system.jobs import PURGE_TASK, ROTATE_TASK
from kassa.worker import build_job_app, worker_options
from tests.conftest import Tenant, make_settings


def _seed(rt: Runtime, tenant: Tenant) -> None:
    now = rt.clock.now()
    with rt.db.transaction() as session:
        token = session.scalars(
            select(RefreshToken).where(RefreshToken.user_id == tenant.user_id)
        ).one()
        token.expires_at = now - timedelta(seconds=1)
    with rt.db.transaction(tenant.org_id) as session:
        for key, expires in (("old", now - timedelta(hours=1)), ("live", now + timedelta(hours=1))):
            session.add(
                idempotency.IdempotencyRecord(
                    org_id=tenant.org_id, key=key, fingerprint="f", status=201, headers={},
                    body=b"{}", created_at=now - timedelta(hours=25), expires_at=expires,
                )
            )  # fmt: skip


def _left(rt: Runtime, tenant: Tenant) -> tuple[int, list[str]]:
    with rt.db.transaction(tenant.org_id) as session:
        tokens = len(
            session.scalars(
                select(RefreshToken.id).where(RefreshToken.user_id == tenant.user_id)
            ).all()
        )
        keys = session.scalars(
            select(idempotency.IdempotencyRecord.key).where(
                idempotency.IdempotencyRecord.org_id == tenant.org_id
            )
        ).all()
    return tokens, sorted(keys)


def test_purge_is_registered_as_a_periodic_task(rt: Runtime) -> None:
    app = build_job_app(rt)
    periodic = {t.task.name: t.cron for t in app.periodic_registry.periodic_tasks.values()}
    assert periodic == {
        PURGE_TASK: rt.settings.purge_cron,
        ROTATE_TASK: "17 3 * * *",
        ADVANCE_TASK: "* * * * *",
    }


def test_worker_runs_the_periodic_purge(
    client: TestClient, rt: Runtime, settings: Settings, tenant: Tenant, tmp_path: Path
) -> None:
    _seed(rt, tenant)
    assert _left(rt, tenant) == (1, ["live", "old"])
    every_second = Runtime.build(
        make_settings(tmp_path, str(settings.database_url), purge_cron="* * * * * *")
    )

    async def run() -> tuple[int, list[str]]:
        app = build_job_app(every_second)
        async with app.open_async():
            worker = asyncio.create_task(
                app.run_worker_async(**worker_options(every_second, fetch_job_polling_interval=0.2))
            )
            try:
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    left = await asyncio.to_thread(_left, rt, tenant)
                    if left == (0, ["live"]):
                        return left
                return left
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    try:
        assert asyncio.run(run()) == (0, ["live"])
    finally:
        every_second.close()
