"""Routes: GET/PATCH /v1/org (the caller's own organization)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from kassa.core.context import Principal, Role
from kassa.core.schemas import problem_responses
from kassa.identity.auth import db, idempotent, require, runtime
from kassa.orgs import service
from kassa.orgs.schemas import Org, OrgPatch
from kassa.runtime import Runtime

router = APIRouter(
    tags=["organization"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 409, 422, 429),
)


@router.get("/v1/org", response_model=Org)
def get_org(who: Principal = Depends(require()), session: Session = Depends(db)) -> Org:
    return service.to_schema(service.get_org(session, who))


@router.patch("/v1/org", response_model=Org)
def update_org(
    body: OrgPatch,
    who: Principal = Depends(require(Role.OWNER, Role.ADMIN, api_keys=False)),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Org:
    return service.to_schema(service.update_org(session, who, body, rt.clock.now()))
