"""Routes: /v1/auth/*, /.well-known/jwks.json, /v1/me, /v1/members, /v1/api_keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from kassa.core.context import Principal, Role
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import problem_responses
from kassa.identity import members, schemas, service
from kassa.identity.auth import client_ip, db, idempotent, public_rate_limit, require, runtime
from kassa.identity.errors import InvalidCredentials, SignupDisabled
from kassa.identity.models import ApiKey, Membership, User
from kassa.orgs import service as orgs
from kassa.runtime import Runtime

public = APIRouter(tags=["auth"], dependencies=[Depends(public_rate_limit)])
router = APIRouter(
    tags=["identity"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 409, 422, 429),
)
MANAGERS = require(Role.OWNER, Role.ADMIN, api_keys=False)


def _user(user: User) -> schemas.User:
    return schemas.User(id=user.id, email=user.email, name=user.name, created_at=user.created_at)


def _member(membership: Membership, user: User) -> schemas.Member:
    return schemas.Member(
        id=user.id,
        email=user.email,
        name=user.name,
        role=Role(membership.role),
        created_at=membership.created_at,
    )


def _key(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "mode": key.mode,
        "prefix": key.prefix,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


@public.post(
    "/v1/auth/signup",
    status_code=201,
    response_model=schemas.SignupOut,
    responses=problem_responses(401, 403, 422, 429),
)
def signup(
    body: schemas.SignupIn, session: Session = Depends(db), rt: Runtime = Depends(runtime)
) -> schemas.SignupOut:
    if not rt.settings.signup_enabled:
        raise SignupDisabled()
    org, user, issued = service.signup(
        session, rt.keyring, rt.policy, rt.clock,
        org_name=body.org_name, email=body.email, password=body.password, name=body.name,
        country=body.country, currency=body.currency, timezone=body.timezone,
    )  # fmt: skip
    return schemas.SignupOut(
        org=orgs.to_schema(org),
        user=_user(user),
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


@public.post(
    "/v1/auth/login",
    response_model=schemas.TokenPair,
    responses=problem_responses(401, 403, 422, 429),
)
def login(
    body: schemas.LoginIn,
    request: Request,
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.TokenPair:
    ip = client_ip(request)
    spec = rt.settings.login_ip_max_failures
    rt.limiter.check(spec, "login-failures", ip, code="too_many_failed_logins")
    try:
        issued = service.login(
            session, rt.keyring, rt.policy, rt.clock,
            email=body.email, password=body.password, org_id=body.org,
        )  # fmt: skip
    except InvalidCredentials:
        rt.limiter.record(spec, "login-failures", ip)
        raise
    return schemas.TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


@public.post(
    "/v1/auth/refresh", response_model=schemas.TokenPair, responses=problem_responses(401, 422, 429)
)
def refresh(
    body: schemas.RefreshIn, session: Session = Depends(db), rt: Runtime = Depends(runtime)
) -> schemas.TokenPair:
    issued = service.refresh(session, rt.keyring, rt.policy, rt.clock, body.refresh_token)
    return schemas.TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


@public.post("/v1/auth/logout", status_code=204, responses=problem_responses(422, 429))
def logout(
    body: schemas.RefreshIn, session: Session = Depends(db), rt: Runtime = Depends(runtime)
) -> Response:
    service.logout(session, rt.clock, body.refresh_token)
    return Response(status_code=204)


@public.get("/.well-known/jwks.json", response_model=schemas.Jwks, responses=problem_responses(429))
def jwks(session: Session = Depends(db), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    return rt.keyring.jwks(session)


@router.get("/v1/me", response_model=schemas.Me)
def me(who: Principal = Depends(require()), session: Session = Depends(db)) -> schemas.Me:
    org = orgs.get_org(session, who)
    user = session.get(User, who.user_id) if who.user_id else None
    key = members.get_api_key(session, who, who.api_key_id) if who.api_key_id else None
    return schemas.Me(
        user=_user(user) if user else None,
        org=orgs.to_schema(org),
        role=who.role,
        api_key=schemas.ApiKeyRef(id=key.id, name=key.name, prefix=key.prefix) if key else None,
    )


@router.post("/v1/members", status_code=201, response_model=schemas.Member)
def create_member(
    body: schemas.MemberIn,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Member:
    membership, user = members.create_member(
        session, who, email=body.email, role=body.role, name=body.name,
        password=body.password, now=rt.clock.now(),
    )  # fmt: skip
    return _member(membership, user)


@router.get("/v1/members", response_model=Page[schemas.Member])
def list_members(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    who: Principal = Depends(require()),
    session: Session = Depends(db),
) -> Page[schemas.Member]:
    rows, has_more, next_cursor = members.list_members(session, who, limit, cursor)
    return Page(data=[_member(m, u) for m, u in rows], has_more=has_more, next_cursor=next_cursor)


@router.get(
    "/v1/members/{user_id}", response_model=schemas.Member, responses=problem_responses(404)
)
def get_member(
    user_id: str, who: Principal = Depends(require()), session: Session = Depends(db)
) -> schemas.Member:
    return _member(*members.get_member(session, who, user_id))


@router.patch(
    "/v1/members/{user_id}", response_model=schemas.Member, responses=problem_responses(404)
)
def update_member(
    user_id: str,
    body: schemas.MemberPatch,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
) -> schemas.Member:
    row = members.change_member(session, who, user_id, body.role)
    assert row is not None
    return _member(*row)


@router.delete("/v1/members/{user_id}", status_code=204, responses=problem_responses(404))
def remove_member(
    user_id: str, who: Principal = Depends(MANAGERS), session: Session = Depends(db)
) -> Response:
    members.change_member(session, who, user_id, None)
    return Response(status_code=204)


@router.post("/v1/api_keys", status_code=201, response_model=schemas.ApiKeyCreated)
def create_api_key(
    body: schemas.ApiKeyIn,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.ApiKeyCreated:
    key, secret = members.create_api_key(session, who, body.name, body.mode, rt.clock.now())
    return schemas.ApiKeyCreated(**_key(key), key=secret)


@router.get("/v1/api_keys", response_model=Page[schemas.ApiKey])
def list_api_keys(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
) -> Page[schemas.ApiKey]:
    rows, has_more, next_cursor = members.list_api_keys(session, who, limit, cursor)
    return Page(
        data=[schemas.ApiKey(**_key(k)) for k in rows], has_more=has_more, next_cursor=next_cursor
    )


@router.delete(
    "/v1/api_keys/{key_id}", response_model=schemas.ApiKey, responses=problem_responses(404)
)
def revoke_api_key(
    key_id: str,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.ApiKey:
    return schemas.ApiKey(**_key(members.revoke_api_key(session, who, key_id, rt.clock.now())))
