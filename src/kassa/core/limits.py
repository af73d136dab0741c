"""Limits that keep one client or organization from stalling the others (docs/limits.md).

* ``BodyLimitMiddleware``: a request body is read (and counted) before anything parses it
  or authenticates the caller; past the path's limit the answer is 413 and nothing more is
  read, whether the body announced its length or came chunked.
* ``ConnectionShare``: how many of the API's database connections one organization's
  requests may hold at once (per process). Excess requests wait briefly without holding a
  connection, then get 429.
* ``database_error``: a statement or lock timeout, or a pool that had no connection in
  time, becomes a 504/503 problem instead of a 500.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.core.errors import PROBLEM_CONTENT_TYPE, KassaError
from kassa.core.metrics import LIMIT_REFUSALS

# --- errors -------------------------------------------------------------------------------


class PayloadTooLarge(KassaError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class OrgConcurrencyLimit(KassaError):
    status = 429
    code = "org_concurrency_limit"
    title = "Too many concurrent requests for this organization"


class DatabaseBusy(KassaError):
    """No database connection became free in time (the API's pool is exhausted)."""

    status = 503
    code = "database_busy"
    title = "Service busy"


class LockTimeout(KassaError):
    """A row this request needs stayed locked by another transaction past lock_timeout."""

    status = 503
    code = "lock_timeout"
    title = "Resource busy"


class StatementTimeout(KassaError):
    """A statement ran past statement_timeout and was cancelled by PostgreSQL."""

    status = 504
    code = "statement_timeout"
    title = "Request took too long"


_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"


def database_error(exc: BaseException) -> KassaError | None:
    """The problem a database deadline exception stands for, or None for anything else.
    Follows the exception's cause chain (a service may have wrapped it)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, sa_exc.TimeoutError):
            return DatabaseBusy(
                detail="No database connection became free in time; retry shortly.",
                headers={"Retry-After": "1"},
            )
        sqlstate = getattr(getattr(seen, "orig", None), "sqlstate", None)
        sqlstate = sqlstate or getattr(seen, "sqlstate", None)
        if sqlstate == _LOCK_NOT_AVAILABLE:
            return LockTimeout(
                detail="Something this request needs is locked by another operation; "
                "retry shortly.",
                headers={"Retry-After": "1"},
            )
        if sqlstate == _QUERY_CANCELED:
            return StatementTimeout(
                detail="A database statement of this request exceeded its time limit and "
                "was cancelled; nothing was changed."
            )
        seen = seen.__cause__ or seen.__context__
    return None


def problem(err: KassaError, extra_headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The problem response of a limit's refusal (counted in kassa_limit_refusals_total)."""
    LIMIT_REFUSALS.labels(err.code).inc()
    headers = {**err.headers, **(extra_headers or {})}
    return JSONResponse(
        err.problem(), status_code=err.status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


# --- request bodies -----------------------------------------------------------------------


class BodyLimitMiddleware:
    """Reads each request body completely, counting, before the application sees it: at
    most ``limit`` bytes (``larger`` names paths with their own limit) are ever held. A
    declared Content-Length over the limit is refused before a byte is read; a chunked
    body is refused as soon as it passes the limit. The 413 closes the connection."""

    def __init__(self, app: ASGIApp, limit: int, larger: Mapping[str, int]) -> None:
        self.app = app
        self.limit = limit
        self.larger = dict(larger)

    def limit_for(self, path: str) -> int:
        return self.larger.get(path.rstrip("/") or "/", self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: bytes | None = b"".join(chunks)
        del chunks

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message = {"type": "http.request", "body": body, "more_body": False}
                body = None
                return message
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        err = PayloadTooLarge(
            detail=f"The request body exceeds {limit} bytes, this path's limit.",
            extra={"limit_bytes": limit},
        )
        await problem(err, {"Connection": "close"})(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# --- per-organization share of the API's connections --------------------------------------


class ConnectionShare:
    """At most ``limit`` slots per key (an organization), first come first served, with a
    bounded wait. Used on the event loop only (acquired by the auth dependency, released by
    the transaction middleware once the request's connection is back in the pool)."""

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._held: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def try_acquire(self, key: str) -> bool:
        if self._held.get(key, 0) < self.limit and not self._waiters.get(key):
            self._held[key] = self._held.get(key, 0) + 1
            return True
        return False

    async def acquire(self, key: str) -> None:
        """A slot, waiting up to ``wait_seconds``; else ``OrgConcurrencyLimit`` (429)."""
        if self.try_acquire(key):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(key, deque())
        queue.append(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                if isinstance(exc, TimeoutError):
                    return  # handed a slot just as the wait ran out: keep it
                self.release(key)  # cancelled after being handed one: pass it on
            else:
                waiter.cancel()
                self._forget(key, waiter)
            if isinstance(exc, TimeoutError):
                LIMIT_REFUSALS.labels(OrgConcurrencyLimit.code).inc()
                raise OrgConcurrencyLimit(
                    detail=f"This organization already has {self.limit} requests in "
                    "progress; retry shortly.",
                    headers={"Retry-After": "1"},
                    extra={"limit": self.limit},
                ) from None
            raise

    def release(self, key: str) -> None:
        queue = self._waiters.get(key)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the longest waiter
                if not queue:
                    del self._waiters[key]
                return
        self._waiters.pop(key, None)
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def _forget(self, key: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiters.get(key)
        if queue is None:
            return
        try:
            queue.remove(waiter)
        except ValueError:
            pass
        if not queue:
            del self._waiters[key]


# --- OpenAPI ------------------------------------------------------------------------------

_DESCRIPTIONS = {
    "413": "Payload too large: the body exceeds this path's limit (`payload_too_large`)",
    "429": "Too many requests: a rate limit, or the organization's share of concurrent "
    "requests (`org_concurrency_limit`); see `Retry-After`",
    "503": "Busy: a needed row stayed locked (`lock_timeout`) or no database connection "
    "became free in time (`database_busy`); see `Retry-After`",
    "504": "A database statement exceeded the request's time limit (`statement_timeout`)",
}


def document_limit_responses(app: FastAPI) -> None:
    """Declare the limits' answers on every ``/v1`` operation of the OpenAPI document: 503
    and 504 everywhere, 413 where a body is taken, 429 where the caller authenticates."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for operation in operations.values():
                wanted = ["503", "504"]
                if "requestBody" in operation:
                    wanted.append("413")
                if operation.get("security"):
                    wanted.append("429")
                responses = operation.setdefault("responses", {})
                for status in wanted:
                    responses.setdefault(
                        status, {"description": _DESCRIPTIONS[status], "content": problem}
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
