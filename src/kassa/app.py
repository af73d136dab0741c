"""The FastAPI application factory (composition root of the HTTP side)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from kassa import __version__
from kassa.catalog import api as catalog_api
from kassa.clocks import api as clocks_api
from kassa.core.http import RequestContextMiddleware, TransactionMiddleware, install_error_handlers
from kassa.core.limits import BodyLimitMiddleware, ConnectionShare, document_limit_responses
from kassa.customers import api as customers_api
from kassa.identity import api as identity_api
from kassa.identity import invitations_api
from kassa.invoicing import api as invoicing_api
from kassa.ledger import api as ledger_api
from kassa.metering import api as metering_api
from kassa.orgs import api as orgs_api
from kassa.readings import api as readings_api
from kassa.runtime import Runtime
from kassa.subscriptions import api as subscriptions_api
from kassa.system import api as system_api
from kassa.system.docs import install_docs
from kassa.worker import build_job_app, worker_options

log = structlog.get_logger("kassa.app")

DESCRIPTION = """Kassa's billing API. Authenticate with `Authorization: Bearer <token>`,
where the token is a member's access token (`POST /v1/auth/login`) or an API key."""


def ensure_signing_key(rt: Runtime) -> None:
    with rt.db.transaction() as session:
        rt.keyring.ensure_active(session)


# Paths whose bodies are bulk data (sized for their documented maxima: 10 000 events or
# rows); every other body gets the ordinary limit.
BULK_PATHS = ("/v1/events/batch", "/v1/events/import", "/v1/meter_readings/import")


def install_limits(app: FastAPI, rt: Runtime) -> None:
    """Body size limits (before parsing and authentication) and each organization's share
    of the API's database connections (docs/limits.md)."""
    s = rt.settings
    bulk = {path: s.max_bulk_body_bytes for path in BULK_PATHS}
    app.add_middleware(BodyLimitMiddleware, limit=s.max_body_bytes, larger=bulk)
    app.state.connection_share = ConnectionShare(
        s.org_connection_share, s.org_queue_timeout_ms / 1000
    )
    document_limit_responses(app)


def create_app(rt: Runtime, *, run_worker: bool = False) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(ensure_signing_key, rt)
        job_app = None
        worker: asyncio.Task[None] | None = None
        if run_worker:
            job_app = build_job_app(rt)
            await job_app.open_async()
            worker = asyncio.create_task(
                job_app.run_worker_async(**worker_options(rt, name="kassa-serve"))
            )
            log.info("worker_started", mode="in-process")
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            if job_app is not None:
                await job_app.close_async()

    app = FastAPI(
        title="Kassa",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from installed files by install_docs, not from a CDN
        redoc_url=None,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
    )
    app.state.runtime = rt
    install_docs(app)
    install_error_handlers(app)
    app.add_middleware(
        TransactionMiddleware,
        factory=lambda: rt.db.api_sessionmaker,
        now=rt.clock.now,
        idempotency_ttl=timedelta(hours=rt.settings.idempotency_ttl_hours),
    )
    install_limits(app, rt)
    app.add_middleware(RequestContextMiddleware)
    for router in (
        system_api.router,
        identity_api.public,
        identity_api.router,
        invitations_api.public,
        invitations_api.router,
        orgs_api.router,
        customers_api.router,
        catalog_api.router,
        subscriptions_api.router,
        clocks_api.router,
        metering_api.router,
        readings_api.router,
        invoicing_api.router,
        ledger_api.router,
    ):
        app.include_router(router)
    return app
