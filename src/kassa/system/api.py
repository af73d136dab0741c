"""Routes: /health (liveness), /ready (readiness), /metrics (Prometheus)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from kassa.core.errors import NotFound, Unauthorized
from kassa.core.schemas import problem_responses
from kassa.identity.auth import runtime
from kassa.runtime import Runtime
from kassa.system import service

router = APIRouter(tags=["operations"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(description="database, migrations, worker: what was seen")


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready; `checks` says why"}},
)
async def ready(rt: Runtime = Depends(runtime)) -> JSONResponse:
    """Database reachable, migrations at head, and a worker with a recent heartbeat."""
    window = timedelta(seconds=max(30.0, 3 * rt.settings.worker_heartbeat_seconds))
    result = await run_in_threadpool(service.readiness, rt.db, window)
    return JSONResponse(
        {"status": "ready" if result.ready else "not_ready", "checks": result.detail},
        status_code=200 if result.ready else 503,
    )


class _JobQueue(Collector):
    def __init__(self, rows: list[tuple[str, str, str, int]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "kassa_jobs_in_queue", "Jobs in the queue by task and status (all workers).",
            labels=["queue", "task", "status"],
        )  # fmt: skip
        for queue, task, status, count in self.rows:
            gauge.add_metric([queue, task, status], count)
        yield gauge


def _queue_rows(rt: Runtime) -> list[tuple[str, str, str, int]]:
    with rt.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT queue_name, task_name, status::text, count(*) "
                "FROM procrastinate_jobs GROUP BY 1, 2, 3"
            )
        ).all()
    return [(str(q), str(t), str(s), int(c)) for q, t, s, c in rows]


class _Everything(Collector):
    """The process' metrics and the job queue's, read when scraped (the separate listener)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from _JobQueue(_queue_rows(self.rt)).collect()


def start_metrics_listener(rt: Runtime) -> Callable[[], None] | None:
    """Serve /metrics on ``KASSA_METRICS_ADDRESS`` (a private interface, unauthenticated,
    for Prometheus); returns how to stop it, or None when no address is set."""
    if rt.settings.metrics_address is None:
        return None
    host, _, port = rt.settings.metrics_address.rpartition(":")
    server, thread = start_http_server(int(port), host.strip("[]"), registry=_Everything(rt))

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def _check_scraper(rt: Runtime, authorization: str | None) -> None:
    if rt.settings.metrics_address is not None:
        raise NotFound(detail="No such resource.")  # served on KASSA_METRICS_ADDRESS only
    token = rt.settings.metrics_token
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized(detail="/metrics needs the metrics bearer token.")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses=problem_responses(401, 404),
)
async def metrics(
    rt: Runtime = Depends(runtime),
    authorization: str | None = Header(None, include_in_schema=False),
) -> Response:
    """Prometheus text exposition format. With `KASSA_METRICS_TOKEN` set it needs
    `Authorization: Bearer <token>`; with `KASSA_METRICS_ADDRESS` set it is served on that
    separate listener only (404 here)."""
    _check_scraper(rt, authorization)
    registry = CollectorRegistry()
    registry.register(_JobQueue(await run_in_threadpool(_queue_rows, rt)))
    body = generate_latest(REGISTRY) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
