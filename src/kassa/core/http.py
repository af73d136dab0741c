"""The request boundary: request ids, logging context, metrics, the transaction, errors.

``TransactionMiddleware`` owns each request's unit of work. Services only flush; the
transaction is committed when the response *starts* (before the client sees a byte), so a
failed commit becomes a 500 and never a false success. Error responses roll back, unless
the error says its side effects are part of the answer (a counted failed login, a revoked
token family). A stored idempotent response is written in the same transaction.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.core import idempotency, limits
from kassa.core.errors import PROBLEM_CONTENT_TYPE, FieldError, KassaError, NotFound
from kassa.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger("kassa.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class UnitOfWork:
    """One request's session and transaction, created on first use."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory
        self.session: Session | None = None
        self.pending_key: idempotency.PendingKey | None = None
        self.keep_on_error = False
        # called on the event loop once the connection is back in the pool (e.g. the
        # organization's connection share, kassa.core.limits)
        self.on_release: list[Callable[[], None]] = []

    def get(self) -> Session:
        if self.session is None:
            self.session = self._factory()
            self.session.begin()
        return self.session

    def finish(self, commit: bool) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        try:
            if commit:
                session.commit()
            else:
                session.rollback()
        finally:
            session.close()

    def release_connection(self) -> None:
        """End the transaction so far (rolled back) and give its connection back; the
        session starts a new transaction, with a new connection, on its next statement."""
        if self.session is not None:
            self.session.rollback()

    def released(self) -> None:
        callbacks, self.on_release = self.on_release, []
        for callback in callbacks:
            callback()


class TransactionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        factory: Callable[[], sessionmaker[Session]],
        now: Callable[[], datetime],
        idempotency_ttl: timedelta,
    ) -> None:
        self.app = app
        self.factory = factory
        self.now = now
        self.ttl = idempotency_ttl

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        uow = UnitOfWork(self.factory())
        scope.setdefault("state", {})["uow"] = uow
        start: Message | None = None
        chunks: list[bytes] = []
        done = False

        async def finish_and_send(message: Message) -> None:
            nonlocal done
            status = int(message["status"])
            commit = status < 400 or uow.keep_on_error
            await run_in_threadpool(uow.finish, commit)
            uow.released()
            done = True
            await send(message)

        async def wrapped_send(message: Message) -> None:
            nonlocal start
            if done or uow.session is None:
                await send(message)
                return
            if message["type"] == "http.response.start":
                if uow.pending_key is not None and 200 <= message["status"] < 300:
                    start = message  # hold the response until its body is stored
                    return
                await finish_and_send(message)
                return
            if message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(chunks)
                headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
                await run_in_threadpool(self._store, uow, int(start["status"]), headers, body)
                await finish_and_send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            if uow.session is not None:
                await run_in_threadpool(uow.finish, False)
            uow.released()

    def _store(self, uow: UnitOfWork, status: int, headers: dict[str, str], body: bytes) -> None:
        assert uow.pending_key is not None
        now = self.now()
        idempotency.store(
            uow.get(),
            uow.pending_key,
            idempotency.StoredResponse(status, headers, body),
            now,
            self.ttl,
        )


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"https://kassa.dev/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


class RequestContextMiddleware:
    """Request ids in and out, log context, metrics, and a problem+json 500 for crashes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        def elapsed_ms() -> float:
            return (time.perf_counter() - started) * 1000

        async def wrapped_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    # W3C Server-Timing: time spent in Kassa until the response started
                    (b"server-timing", f"app;dur={elapsed_ms():.2f}".encode()),
                ]
            await send(message)

        try:
            refusal = _refuse_nul(scope)
            if refusal is not None:
                await refusal(scope, receive, wrapped_send)
            else:
                await self.app(scope, receive, wrapped_send)
        except Exception as exc:
            deadline = limits.database_error(exc)
            if deadline is not None and not response_started:
                log.warning("database_deadline", path=scope.get("path"), code=deadline.code)
                await limits.problem(deadline)(scope, receive, wrapped_send)
                return
            log.exception("unhandled_error", path=scope.get("path"))
            if response_started:
                raise
            response = problem_response(
                500,
                "internal_error",
                "Internal server error",
                f"Something went wrong on our side. Quote request id {request_id}.",
            )
            await response(scope, receive, wrapped_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(time.perf_counter() - started)
            log.info(
                "request",
                method=method,
                route=template,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


def _refuse_nul(scope: Scope) -> Response | None:
    """U+0000 is never legitimate in a path or query (and PostgreSQL text cannot hold it):
    a path with one names nothing (404); a query parameter with one is invalid (422)."""
    if "\x00" in scope.get("path", ""):
        return problem_response(404, "not_found", "Not found", "No such resource.")
    query = scope.get("query_string", b"")
    if b"%00" not in query.lower() and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            field = name.replace("\x00", "") or "query"
            message = "must not contain NUL (U+0000) characters"
            return problem_response(
                422, "validation_error", "Invalid request", f"{field}: {message}",
                errors=[{"field": field, "message": message}],
            )  # fmt: skip
    return None


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            name += ("." if name else "") + str(part)
    return name or str(loc[0] if loc else "body")


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path. Starlette's 405 names only the first
    route whose path matched, but each method of a path is its own route here (and two
    routers may share a path), so its ``Allow`` would list one method of several. Asking
    each route whether it fully matches the path with each method uses only Starlette's
    public ``matches`` (FastAPI nests included routers inside one route)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install_error_handlers(app: FastAPI) -> None:
    async def kassa_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, idempotency.Replay):
            stored = exc.stored
            headers = dict(stored.headers)
            media_type = headers.pop("content-type", "application/json")
            headers["Idempotent-Replayed"] = "true"
            return Response(stored.body, stored.status, headers=headers, media_type=media_type)
        assert isinstance(exc, KassaError)
        uow = getattr(request.state, "uow", None)
        if getattr(exc, "persist_effects", False) and uow is not None:
            uow.keep_on_error = True
        return JSONResponse(
            exc.problem(),
            status_code=exc.status,
            headers=exc.headers,
            media_type=PROBLEM_CONTENT_TYPE,
        )

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            FieldError(_field_name(tuple(e.get("loc", ()))), str(e.get("msg", "invalid")))
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return problem_response(
            422,
            "validation_error",
            "Invalid request",
            detail,
            errors=[{"field": e.field, "message": e.message} for e in errors],
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            return JSONResponse(
                NotFound(detail="No such resource.").problem(),
                status_code=404,
                media_type=PROBLEM_CONTENT_TYPE,
            )
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # a body that is not UTF-8 JSON is a payload validation error like any other
            message = "must be a UTF-8 encoded JSON document"
            return problem_response(
                422, "validation_error", "Invalid request", f"body: {message}",
                errors=[{"field": "body", "message": message}],
            )  # fmt: skip
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        code = re.sub(r"[^a-z]+", "_", str(exc.detail).lower()).strip("_") or "http_error"
        detail = str(exc.detail)
        return problem_response(exc.status_code, code, detail, detail, headers=headers)

    app.add_exception_handler(KassaError, kassa_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
