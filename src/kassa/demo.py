"""The demo organization `./scripts/run` starts with, so there is something to explore."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from kassa.core.context import Principal, Role
from kassa.db import rls
from kassa.identity import members, service
from kassa.identity.models import ApiKey, Membership
from kassa.orgs import service as orgs
from kassa.runtime import Runtime

DEMO_EMAIL = "demo@kassa.dev"
DEMO_PASSWORD = "kassa-demo-password"  # noqa: S105 - published demo login, test mode only
DEMO_ORG = "Kassa Demo"
DEMO_KEY_NAME = "demo (printed at start)"


@dataclass(frozen=True)
class DemoLogin:
    org_id: str
    email: str
    password: str
    api_key: str


def ensure_demo(rt: Runtime) -> DemoLogin:
    """Create the demo org and owner once; mint a fresh API key each start (older demo
    keys are revoked, since a key can only be shown once)."""
    now = rt.clock.now()
    with rt.db.transaction() as session:
        user = service.find_user(session, DEMO_EMAIL, lock=True)
        org_id: str | None = None
        if user is not None:
            rls.set_user(session, user.id)
            org_id = session.scalars(
                select(Membership.org_id).where(Membership.user_id == user.id).limit(1)
            ).first()
        if user is None:
            user = service.create_user(session, DEMO_EMAIL, DEMO_PASSWORD, "Demo Owner", now)
        if org_id is None:
            org = orgs.create_org(
                session, name=DEMO_ORG, now=now, country="DE", currency="eur",
                timezone="Europe/Berlin",
            )  # fmt: skip
            org_id = org.id
            service.add_membership(session, org_id, user.id, Role.OWNER, now)
        rls.set_org(session, org_id)
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.org_id == org_id, ApiKey.name == DEMO_KEY_NAME, ApiKey.revoked_at.is_(None)
            )
            .values(revoked_at=now)
        )
        owner = Principal(org_id=org_id, role=Role.OWNER, user_id=user.id)
        _, secret = members.create_api_key(session, owner, DEMO_KEY_NAME, None, now)
    return DemoLogin(org_id, DEMO_EMAIL, DEMO_PASSWORD, secret)
