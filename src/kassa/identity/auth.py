"""FastAPI dependencies: the request's session, its principal, role checks, idempotency."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from kassa.core import idempotency
from kassa.core.context import Principal, Role
from kassa.core.errors import RateLimited, Unauthorized
from kassa.core.http import UnitOfWork
from kassa.core.limits import ConnectionShare
from kassa.identity import service
from kassa.identity.errors import InsufficientRole
from kassa.identity.mails import MailContext
from kassa.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="A member's access token or an API key")


# Dependencies that only look something up are ``async``: FastAPI runs a plain ``def``
# dependency in the thread pool, a hop per dependency per request. (``db`` opens nothing:
# the session connects on its first statement, in the endpoint's thread.)


async def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def uow(request: Request) -> UnitOfWork:
    unit: UnitOfWork = request.state.uow
    return unit


async def db(unit: UnitOfWork = Depends(uow)) -> Session:
    return unit.get()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def public_rate_limit(request: Request, rt: Runtime = Depends(runtime)) -> None:
    """Per-IP limit on unauthenticated routes (signup, login, refresh)."""
    rt.limiter.hit(rt.settings.rate_limit_public, "public", client_ip(request))


def _authenticate(session: Session, rt: Runtime, token: str) -> Principal:
    who = service.authenticate(session, rt.keyring, rt.clock, rt.revocations, token)
    rt.limiter.hit(rt.settings.rate_limit_api, "api", who.org_id, who.actor_id)
    return who


async def principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    unit: UnitOfWork = Depends(uow),
    rt: Runtime = Depends(runtime),
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized(detail="Send `Authorization: Bearer <access token or API key>`.")
    token = credentials.credentials
    who = await run_in_threadpool(_authenticate, unit.get(), rt, token)
    share: ConnectionShare | None = getattr(request.app.state, "connection_share", None)
    if share is None:
        return who
    if not share.try_acquire(who.org_id):
        # The organization holds its share of connections: wait without holding one
        # (the authentication's transaction is given back), then authenticate again.
        await run_in_threadpool(unit.release_connection)
        await share.acquire(who.org_id)  # 429 after the wait
        unit.on_release.append(lambda: share.release(who.org_id))
        again = await run_in_threadpool(
            service.authenticate, unit.get(), rt.keyring, rt.clock, rt.revocations, token
        )
        if again.org_id != who.org_id:  # pragma: no cover - a token names one organization
            raise Unauthorized(detail="The credentials changed organization.")
        return again
    unit.on_release.append(lambda: share.release(who.org_id))
    return who


def require(*roles: Role, api_keys: bool = True) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting members with one of ``roles`` (all roles if none given)
    and, unless ``api_keys=False``, organization API keys."""
    allowed = frozenset(roles) or frozenset(Role)

    async def check(
        request: Request,
        who: Principal = Depends(principal),
        unit: UnitOfWork = Depends(uow),
        rt: Runtime = Depends(runtime),
    ) -> Principal:
        # Bound here, in the request's task, so the request log line and everything the
        # endpoint logs (in its worker thread, which copies this context) carry them.
        structlog.contextvars.bind_contextvars(
            org_id=who.org_id, user_id=who.user_id, api_key_id=who.api_key_id
        )
        if who.is_api_key and not api_keys:
            raise InsufficientRole(detail="API keys cannot do this; log in as a member.")
        if not who.is_api_key and who.role not in allowed:
            raise InsufficientRole(detail=f"Requires role {' or '.join(sorted(allowed))}.")
        await _claim_idempotency_key(request, who, unit, rt)
        return who

    return check


_IDEMPOTENCY = "kassa_idempotency_request"


async def idempotent(request: Request, who: Principal = Depends(principal)) -> None:
    """Honour ``Idempotency-Key`` on a POST (see kassa.core.idempotency): note the key and
    the request's fingerprint here; the key is claimed (and a stored response replayed)
    only once the route's role check passed, by ``require``."""
    key = request.headers.get("idempotency-key")
    if key is None or request.method != "POST":
        return
    body = await request.body()
    print_ = idempotency.fingerprint(request.method, request.url.path, body)
    setattr(request.state, _IDEMPOTENCY, (key, print_))


async def _claim_idempotency_key(
    request: Request, who: Principal, unit: UnitOfWork, rt: Runtime
) -> None:
    noted: tuple[str, str] | None = getattr(request.state, _IDEMPOTENCY, None)
    if noted is None or unit.pending_key is not None:
        return
    setattr(request.state, _IDEMPOTENCY, None)
    key, print_ = noted
    unit.pending_key = await run_in_threadpool(
        idempotency.claim, unit.get(), who.org_id, who.actor_id, key, print_, rt.clock.now()
    )


async def mail_context(rt: Runtime = Depends(runtime)) -> MailContext:
    s = rt.settings

    def may_mail(address: str) -> bool:
        try:
            rt.limiter.hit(s.mail_per_address_limit, "mail", service.normalize_email(address))
        except RateLimited:
            return False
        return True

    return MailContext(
        postman=rt.postman,
        public_url=s.public_url,
        invitation_ttl=timedelta(hours=s.invitation_ttl_hours),
        verification_ttl=timedelta(hours=s.email_verification_ttl_hours),
        reset_ttl=timedelta(minutes=s.password_reset_ttl_minutes),
        may_mail=may_mail,
    )


# The usual role sets of business routes: viewers read, staff and above write, and
# irreversible or settings-level operations need an owner or admin.
READ = require()
WRITE = require(Role.OWNER, Role.ADMIN, Role.STAFF)
MANAGE = require(Role.OWNER, Role.ADMIN)
