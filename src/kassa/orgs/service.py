"""Organization use cases. Runs inside the caller's transaction; never commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.context import Principal
from kassa.core.errors import NotFound, field_error
from kassa.core.ids import new_id
from kassa.db import cache
from kassa.orgs import rules
from kassa.orgs.models import Organization
from kassa.orgs.schemas import Dunning, Org, OrgPatch
from kassa.tax.rules import load_ruleset


def create_org(
    session: Session,
    *,
    name: str,
    now: datetime,
    country: str | None = None,
    currency: str | None = None,
    timezone: str | None = None,
    mode: str = "test",
) -> Organization:
    org = Organization(
        id=new_id("org"),
        name=name,
        country=country,
        currency=currency or "eur",
        timezone=timezone or "UTC",
        mode=mode,
        tax_ruleset="none",
        invoice_prefix=rules.invoice_prefix_for(name),
        dunning=Dunning().model_dump(),
        late_usage="reject",
        metadata_={},
        created_at=now,
        updated_at=now,
    )
    session.add(org)
    session.flush()
    return org


def ids(session: Session, only: str | None = None) -> list[str]:
    """Every organization's id in order (operations walk them one by one); ``only``: that
    one, if it exists."""
    stmt = select(Organization.id).order_by(Organization.id)
    if only is not None:
        stmt = stmt.where(Organization.id == only)
    return list(session.scalars(stmt))


def load(session: Session, org_id: str) -> Organization:
    org = cache.get(session, Organization, org_id)
    if org is None:
        raise NotFound(detail="Organization not found.")
    return org


def get_org(session: Session, principal: Principal) -> Organization:
    """The principal's own organization: the only one a request can ever read."""
    return load(session, principal.org_id)


def update_org(
    session: Session, principal: Principal, patch: OrgPatch, now: datetime
) -> Organization:
    org = load(session, principal.org_id)
    changes: dict[str, Any] = patch.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if field in ("iban", "bic") and value is None:
            setattr(org, field, None)  # a bank account can be removed
            if field == "iban":
                org.bic = None
            continue
        if value is None:
            continue  # explicit nulls leave a setting unchanged (country can't be unset)
        if field == "metadata":
            org.metadata_ = value
        elif field == "address":
            org.address = {k: v for k, v in value.items() if v is not None}
        else:
            setattr(org, field, value)
    ruleset = load_ruleset(org.tax_ruleset)
    if ruleset.charges_tax and org.country not in ruleset.region:
        field = "tax_ruleset" if "tax_ruleset" in changes else "country"
        raise field_error(
            field, f"{org.tax_ruleset} needs the organization's country within its region"
        )
    org.updated_at = now
    session.flush()
    return org


def to_schema(org: Organization) -> Org:
    return Org(
        id=org.id,
        name=org.name,
        country=org.country,
        currency=org.currency,
        timezone=org.timezone,
        mode=org.mode,
        tax_ruleset=org.tax_ruleset,
        invoice_prefix=org.invoice_prefix,
        dunning=Dunning.model_validate(org.dunning),
        late_usage=org.late_usage,
        invoice_grace_seconds=org.invoice_grace_seconds,
        payment_terms_days=org.payment_terms_days,
        address=org.address,
        tax_id=org.tax_id,
        email=org.email,
        payment_instructions=org.payment_instructions,
        iban=org.iban,
        bic=org.bic,
        metadata=org.metadata_,
        created_at=org.created_at,
    )
