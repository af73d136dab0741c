"""Plan use cases. A plan is a code + currency + interval; its prices live in immutable
versions. ``PATCH`` writes a new version; subscriptions keep theirs until migrated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.catalog import errors, meters, schemas
from kassa.catalog.models import Plan, PlanVersion
from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.errors import field_error
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.db import cache
from kassa.db.unique import flush_unique
from kassa.pricing import Charge, PlanPricing, PricingError, parse_charge

PlanRow = tuple[Plan, PlanVersion]


def _charges(
    session: Session, org_id: str, charges: Sequence[schemas.ChargeIn]
) -> list[dict[str, Any]]:
    """Validate charges (meters exist, pricing properties well-formed) into stored form."""
    stored = []
    for i, charge in enumerate(charges):
        try:
            meter = meters.resolve(session, org_id, charge.meter)
        except errors.MeterNotFound:
            raise field_error(f"charges[{i}].meter", "no such meter") from None
        try:
            parse_charge(meter.id, charge.model, charge.properties, charge.min_amount)
        except PricingError as exc:
            path, _, message = str(exc).partition(": ")
            if not message:
                path, message = "", str(exc)
            field = f"charges[{i}].properties" + (f".{path}" if path else "")
            raise field_error(field, message) from None
        stored.append(
            {
                "meter": meter.id,
                "model": charge.model,
                "properties": charge.properties,
                "min_amount": charge.min_amount,
                "name": charge.name,
            }
        )
    return stored


def to_schema(session: Session, plan: Plan, version: PlanVersion) -> schemas.Plan:
    meter_map = meters.by_ids(session, plan.org_id, [c["meter"] for c in version.charges])
    return schemas.Plan(
        id=plan.id,
        code=plan.code,
        name=version.name,
        currency=plan.currency,
        interval=plan.interval,
        interval_count=plan.interval_count,
        amount=version.amount,
        pay_in_advance=version.pay_in_advance,
        trial_days=version.trial_days,
        charges=[
            schemas.Charge(event_name=meter_map[c["meter"]].event_name, **c)
            for c in version.charges
        ],
        entitlements=version.entitlements,
        version=version.version,
        latest_version=plan.current_version,
        metadata=version.metadata_,
        created_at=plan.created_at,
    )


def create(session: Session, principal: Principal, data: schemas.PlanIn, clock: Clock) -> PlanRow:
    now = clock.now()
    charges = _charges(session, principal.org_id, data.charges)
    plan = Plan(
        org_id=principal.org_id, id=new_id("plan"), code=data.code, currency=data.currency,
        interval=data.interval, interval_count=data.interval_count, current_version=1,
        created_at=now,
    )  # fmt: skip
    session.add(plan)
    flush_unique(
        session, lambda _: errors.DuplicateCode(detail=f"A plan with code {data.code!r} exists.")
    )
    version = PlanVersion(
        org_id=principal.org_id, plan_id=plan.id, version=1, name=data.name, amount=data.amount,
        pay_in_advance=data.pay_in_advance, trial_days=data.trial_days, charges=charges,
        entitlements=data.entitlements, metadata_=data.metadata or {}, created_at=now,
    )  # fmt: skip
    session.add(version)
    session.flush()
    return plan, version


def resolve(session: Session, org_id: str, ref: str, *, lock: bool = False) -> Plan:
    """A plan by id or code. By id without a lock, a per-transaction cache answers
    repeated lookups (a billing chunk resolves the same few plans thousands of times)."""
    if not lock and looks_like_id(ref, "plan"):
        found = cache.get(session, Plan, (org_id, ref))
        if found is None:
            raise errors.PlanNotFound(detail=f"No plan {ref!r} in this organization.")
        return found
    column = Plan.id if looks_like_id(ref, "plan") else Plan.code
    stmt = select(Plan).where(Plan.org_id == org_id, column == ref)
    if lock:
        stmt = stmt.with_for_update()
    plan = session.scalars(stmt).one_or_none()
    if plan is None:
        raise errors.PlanNotFound(detail=f"No plan {ref!r} in this organization.")
    return plan


def version_of(session: Session, plan: Plan, version: int | None = None) -> PlanVersion:
    wanted = plan.current_version if version is None else version
    row = cache.get(session, PlanVersion, (plan.org_id, plan.id, wanted))
    if row is None:
        raise errors.PlanVersionNotFound(detail=f"Plan {plan.code} has no version {wanted}.")
    return row


def get(session: Session, principal: Principal, ref: str, version: int | None = None) -> PlanRow:
    plan = resolve(session, principal.org_id, ref)
    return plan, version_of(session, plan, version)


def update(
    session: Session, principal: Principal, ref: str, patch: schemas.PlanPatch, clock: Clock
) -> PlanRow:
    """Write a new version from the latest one plus the patch."""
    plan = resolve(session, principal.org_id, ref, lock=True)
    latest = version_of(session, plan)
    changes = patch.model_dump(exclude_unset=True)
    charges = (
        _charges(session, principal.org_id, patch.charges)
        if patch.charges is not None
        else latest.charges
    )
    plan.current_version += 1
    version = PlanVersion(
        org_id=plan.org_id,
        plan_id=plan.id,
        version=plan.current_version,
        name=changes.get("name") or latest.name,
        amount=latest.amount if patch.amount is None else patch.amount,
        pay_in_advance=(
            latest.pay_in_advance if patch.pay_in_advance is None else patch.pay_in_advance
        ),
        trial_days=latest.trial_days if patch.trial_days is None else patch.trial_days,
        charges=charges,
        entitlements=latest.entitlements if patch.entitlements is None else patch.entitlements,
        metadata_=latest.metadata_ if patch.metadata is None else patch.metadata,
        created_at=clock.now(),
    )
    session.add(version)
    session.flush()
    return plan, version


def list_plans(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[PlanRow], bool, str | None]:
    stmt = select(Plan).where(Plan.org_id == principal.org_id)
    rows, has_more, next_cursor = paginate(session, stmt, Plan.id, limit, cursor)
    return [(p, version_of(session, p)) for p in rows], has_more, next_cursor


def pricing(session: Session, plan: Plan, version: PlanVersion) -> PlanPricing:
    """The pure pricing view of a plan version (for kassa.pricing.rate); a charge without
    a name is described by its meter's name."""
    meter_map = meters.by_ids(session, plan.org_id, [c["meter"] for c in version.charges])
    return PlanPricing(
        name=version.name,
        currency=plan.currency,
        amount=version.amount,
        charges=tuple(_charge(c, meter_map[c["meter"]].name) for c in version.charges),
    )


def _charge(stored: dict[str, Any], meter_name: str) -> Charge:
    return parse_charge(
        stored["meter"],
        stored["model"],
        stored["properties"],
        stored.get("min_amount"),
        name=stored.get("name") or meter_name,
    )
