"""Routes: /v1/auth/*, /.well-known/jwks.json, /v1/me, /v1/orgs, /v1/members, /v1/api_keys.
(Invitations: kassa.identity.invitations_api.)"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from kassa.core.context import Principal, Role
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import problem_responses
from kassa.identity import accounts, members, schemas, service
from kassa.identity.auth import (
    client_ip,
    db,
    idempotent,
    mail_context,
    public_rate_limit,
    require,
    runtime,
)
from kassa.identity.errors import InvalidCredentials, SignupDisabled
from kassa.identity.mails import MailContext
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
    return schemas.User(
        id=user.id,
        email=user.email,
        name=user.name,
        created_at=user.created_at,
        email_verified_at=user.email_verified_at,
    )


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


SIGNUP_PENDING = (
    "If this address can be used, we have sent it an e-mail: follow it to continue. "
    "An address that already has an account gets no new organization: log in and "
    "use POST /v1/orgs."
)


@public.post(
    "/v1/auth/signup",
    status_code=201,
    response_model=schemas.SignupOut,
    responses={
        202: {
            "model": schemas.CheckYourEmail,
            "description": "The e-mail already has an account: nothing was created, the "
            "address was mailed (the password is not checked; counts as a failed login).",
        },
        **problem_responses(401, 403, 422, 429),
    },
)
def signup(
    body: schemas.SignupIn,
    request: Request,
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
    mail: MailContext = Depends(mail_context),
) -> Any:
    if not rt.settings.signup_enabled:
        raise SignupDisabled()
    ip = client_ip(request)
    spec = rt.settings.login_ip_max_failures
    rt.limiter.check(spec, "login-failures", ip, code="too_many_failed_logins")
    created = service.signup(
        session,
        rt.keyring,
        rt.policy,
        rt.clock,
        mail,
        org_name=body.org_name,
        email=body.email,
        password=body.password,
        name=body.name,
        country=body.country,
        currency=body.currency,
        timezone=body.timezone,
    )
    if created is None:
        rt.limiter.record(spec, "login-failures", ip)
        return JSONResponse(
            schemas.CheckYourEmail(detail=SIGNUP_PENDING).model_dump(), status_code=202
        )
    org, user, issued = created
    return schemas.SignupOut(
        org=orgs.to_schema(org),
        user=_user(user),
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


@public.post(
    "/v1/auth/verify_email",
    response_model=schemas.User,
    responses=problem_responses(422, 429),
)
def verify_email(
    body: schemas.TokenIn, session: Session = Depends(db), rt: Runtime = Depends(runtime)
) -> schemas.User:
    """Mark the address verified with the token from the verification e-mail."""
    return _user(accounts.verify_email(session, rt.clock, body.token))


FORGOT_ACCEPTED = (
    "If an account uses this address, a link to reset its password is on its way. "
    "It works once and expires."
)


@public.post(
    "/v1/auth/forgot_password",
    status_code=202,
    response_model=schemas.CheckYourEmail,
    responses=problem_responses(422, 429),
)
def forgot_password(
    body: schemas.ForgotPasswordIn,
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
    mail: MailContext = Depends(mail_context),
) -> schemas.CheckYourEmail:
    """Always 202 with the same body, whether or not the account exists."""
    accounts.forgot_password(session, rt.clock, mail, body.email)
    return schemas.CheckYourEmail(detail=FORGOT_ACCEPTED)


@public.post("/v1/auth/reset_password", status_code=204, responses=problem_responses(422, 429))
def reset_password(
    body: schemas.ResetPasswordIn, session: Session = Depends(db), rt: Runtime = Depends(runtime)
) -> Response:
    """Set a new password with the reset token; every session of the account ends."""
    accounts.reset_password(session, rt.clock, rt.revocations, body.token, body.password)
    return Response(status_code=204)


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
    issued = service.refresh(
        session, rt.keyring, rt.policy, rt.clock, rt.revocations, body.refresh_token
    )
    return schemas.TokenPair(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


@public.post("/v1/auth/logout", status_code=204, responses=problem_responses(422, 429))
def logout(
    body: schemas.RefreshIn, session: Session = Depends(db), rt: Runtime = Depends(runtime)
) -> Response:
    service.logout(session, rt.clock, rt.revocations, body.refresh_token)
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


@router.post(
    "/v1/auth/resend_verification",
    status_code=202,
    response_model=schemas.CheckYourEmail,
    tags=["auth"],
)
def resend_verification(
    who: Principal = Depends(require(api_keys=False)),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
    mail: MailContext = Depends(mail_context),
) -> schemas.CheckYourEmail:
    """Mail the logged-in user a new verification link (nothing if already verified)."""
    assert who.user_id is not None
    sent = accounts.resend_verification(session, rt.clock, mail, who.user_id)
    return schemas.CheckYourEmail(
        detail="A new verification link is on its way." if sent else "Already verified."
    )


@router.post("/v1/orgs", status_code=201, response_model=schemas.SignupOut, tags=["organization"])
def create_org(
    body: schemas.OrgIn,
    who: Principal = Depends(require(api_keys=False)),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.SignupOut:
    """Create another organization owned by the logged-in member; returns tokens for it."""
    org, user, issued = service.create_org_for_user(
        session,
        rt.keyring,
        rt.policy,
        rt.clock,
        who,
        org_name=body.org_name,
        country=body.country,
        currency=body.currency,
        timezone=body.timezone,
    )
    return schemas.SignupOut(
        org=orgs.to_schema(org),
        user=_user(user),
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
    )


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
