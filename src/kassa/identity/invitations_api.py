"""Routes: /v1/invitations (owners and admins) and /v1/invitations/accept (the invitee)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from kassa.core.context import Principal, Role
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import problem_responses
from kassa.identity import invitations, schemas
from kassa.identity.api import _user
from kassa.identity.auth import db, idempotent, mail_context, public_rate_limit, require, runtime
from kassa.identity.mails import MailContext
from kassa.identity.models import Invitation
from kassa.orgs import service as orgs
from kassa.runtime import Runtime

public = APIRouter(tags=["invitations"], dependencies=[Depends(public_rate_limit)])
router = APIRouter(
    tags=["invitations"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 409, 422, 429),
)
MANAGERS = require(Role.OWNER, Role.ADMIN, api_keys=False)
_optional_bearer = HTTPBearer(
    auto_error=False, description="The invitee's access token, when the e-mail has an account"
)


def _out(inv: Invitation, rt: Runtime) -> schemas.Invitation:
    return schemas.Invitation(
        id=inv.id,
        email=inv.email,
        role=Role(inv.role),
        name=inv.name,
        status=invitations.status(inv, rt.clock.now()),
        invited_by=inv.invited_by,
        created_at=inv.created_at,
        sent_at=inv.sent_at,
        expires_at=inv.expires_at,
        accepted_at=inv.accepted_at,
        accepted_by=inv.accepted_by,
        revoked_at=inv.revoked_at,
    )


@router.post("/v1/invitations", status_code=201, response_model=schemas.Invitation)
def create_invitation(
    body: schemas.InvitationIn,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
    mail: MailContext = Depends(mail_context),
) -> schemas.Invitation:
    """Invite an e-mail address with a role: it receives a one-time link. Nobody becomes a
    member (and no account is created) until the invitee accepts."""
    inv = invitations.invite(
        session, who, mail, rt.clock, email=body.email, role=body.role, name=body.name
    )
    return _out(inv, rt)


@router.get("/v1/invitations", response_model=Page[schemas.Invitation])
def list_invitations(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Page[schemas.Invitation]:
    rows, has_more, next_cursor = invitations.list_invitations(session, who, limit, cursor)
    return Page(data=[_out(i, rt) for i in rows], has_more=has_more, next_cursor=next_cursor)


@router.get(
    "/v1/invitations/{invitation_id}",
    response_model=schemas.Invitation,
    responses=problem_responses(404),
)
def get_invitation(
    invitation_id: str,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Invitation:
    return _out(invitations.get_invitation(session, who, invitation_id), rt)


@router.delete(
    "/v1/invitations/{invitation_id}",
    response_model=schemas.Invitation,
    responses=problem_responses(404),
)
def revoke_invitation(
    invitation_id: str,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.Invitation:
    """Revoke: its token stops working. Returns the invitation (status `revoked`)."""
    return _out(invitations.revoke(session, who, invitation_id, rt.clock.now()), rt)


@router.post(
    "/v1/invitations/{invitation_id}/resend",
    response_model=schemas.Invitation,
    responses=problem_responses(404),
)
def resend_invitation(
    invitation_id: str,
    who: Principal = Depends(MANAGERS),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
    mail: MailContext = Depends(mail_context),
) -> schemas.Invitation:
    """Mail a new token (the previous one stops working) and restart the expiry."""
    return _out(invitations.resend(session, who, mail, rt.clock, invitation_id), rt)


@public.post(
    "/v1/invitations/accept",
    response_model=schemas.InvitationAccepted,
    responses=problem_responses(401, 403, 409, 422, 429),
)
def accept_invitation(
    body: schemas.AcceptInvitationIn,
    credentials: HTTPAuthorizationCredentials | None = Depends(_optional_bearer),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> schemas.InvitationAccepted:
    """Join the organization. A new user sends `password` (and optionally `name`) and gets
    an account; an e-mail that has an account must be logged in as it (`Authorization:
    Bearer <its access token>`): 401 `login_required` otherwise, 403
    `invitation_for_another_account` for someone else's token. Returns tokens for the
    organization joined."""
    done = invitations.accept(
        session,
        rt.keyring,
        rt.policy,
        rt.clock,
        rt.revocations,
        token=body.token,
        bearer=credentials.credentials if credentials else None,
        password=body.password,
        name=body.name,
    )
    return schemas.InvitationAccepted(
        org=orgs.to_schema(done.org),
        user=_user(done.user),
        role=Role(done.invitation.role),
        access_token=done.issued.access_token,
        refresh_token=done.issued.refresh_token,
        expires_in=done.issued.expires_in,
    )
