"""Customer use cases. Runs inside the caller's transaction; never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.errors import field_error
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.customers import errors
from kassa.customers.models import Customer
from kassa.customers.schemas import Customer as CustomerOut
from kassa.customers.schemas import CustomerIn, CustomerPatch, TaxInfo
from kassa.db.unique import flush_unique
from kassa.events import service as events
from kassa.events.models import CUSTOMER_EVENTS, DomainEvent
from kassa.tax import rules as tax_rules

RESTORE_WINDOW = timedelta(days=30)
ANONYMIZED = "anonymized"


def to_schema(c: Customer) -> CustomerOut:
    return CustomerOut(
        id=c.id,
        external_id=c.external_id,
        name=c.name,
        email=c.email,
        phone=c.phone,
        currency=c.currency,
        timezone=c.timezone,
        locale=c.locale,
        address=c.address,
        tax=TaxInfo(exempt=c.tax_exempt, tax_id=c.tax_id, kind=c.tax_kind),
        buyer_reference=c.buyer_reference,
        test_clock=c.test_clock_id,
        metadata=c.metadata_,
        created_at=c.created_at,
        deleted=c.deleted_at is not None,
        deleted_at=c.deleted_at,
        anonymized=c.anonymized_at is not None,
    )


def resolve(session: Session, org_id: str, ref: str, *, lock: bool = False) -> Customer:
    """A customer by id or by external_id (deleted ones included; callers decide)."""
    column = Customer.id if looks_like_id(ref, "cus") else Customer.external_id
    stmt = select(Customer).where(Customer.org_id == org_id, column == ref)
    if lock:
        stmt = stmt.with_for_update()
    customer = session.scalars(stmt).one_or_none()
    if customer is None:
        raise errors.CustomerNotFound(detail=f"No customer {ref!r} in this organization.")
    return customer


def resolve_active(session: Session, org_id: str, ref: str, *, lock: bool = False) -> Customer:
    customer = resolve(session, org_id, ref, lock=lock)
    if customer.deleted_at is not None:
        raise errors.CustomerDeleted()
    return customer


def _flush_unique(session: Session) -> None:
    def conflict(exc: IntegrityError) -> Exception:
        return errors.ExternalIdTaken() if "external_id" in str(exc.orig) else exc

    flush_unique(session, conflict)


def _apply(customer: Customer, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name == "address":
            customer.address = value
        elif name == "tax":
            tax = value or {}
            customer.tax_exempt = bool(tax.get("exempt", False))
            customer.tax_id = tax.get("tax_id")
            customer.tax_kind = tax.get("kind", "individual")
        elif name == "metadata":
            customer.metadata_ = value or {}
        else:
            setattr(customer, name, value)


def _check_tax_id(customer: Customer) -> None:
    """A tax id must fit its country's format (no registry lookup); it is kept normalized."""
    country = (customer.address or {}).get("country")
    if not customer.tax_id or not country or not tax_rules.knows_tax_id_format(country):
        return
    normalized = tax_rules.validate_tax_id(country, customer.tax_id)
    if normalized is None:
        raise field_error(
            "tax.tax_id", f"is not a well-formed tax id for {country}", code="invalid_tax_id"
        )
    customer.tax_id = normalized


def create(session: Session, principal: Principal, data: CustomerIn, clock: Clock) -> Customer:
    from kassa.clocks import service as clocks

    now = clock.now()
    clock_id = None
    if data.test_clock is not None:
        clock_id = clocks.get(session, principal, data.test_clock).id
    customer = Customer(
        org_id=principal.org_id,
        id=new_id("cus"),
        test_clock_id=clock_id,
        metadata_={},
        created_at=now,
        updated_at=now,
        tax_exempt=False,
        tax_kind="individual",
    )
    _apply(customer, data.model_dump(exclude={"test_clock"}, exclude_none=True))
    _check_tax_id(customer)
    session.add(customer)
    _flush_unique(session)
    events.record(session, clock, principal.org_id, "customer.created", to_schema(customer))
    return customer


def update_customer(
    session: Session, principal: Principal, ref: str, patch: CustomerPatch, clock: Clock
) -> Customer:
    customer = resolve_active(session, principal.org_id, ref, lock=True)
    if customer.anonymized_at is not None:
        raise errors.CustomerAnonymized()
    _apply(customer, patch.model_dump(exclude_unset=True))
    _check_tax_id(customer)
    customer.updated_at = clock.now()
    _flush_unique(session)
    events.record(session, clock, principal.org_id, "customer.updated", to_schema(customer))
    return customer


def list_customers(
    session: Session, principal: Principal, limit: int, cursor: str | None, *,
    email: str | None = None, deleted: bool = False,
) -> tuple[Sequence[Customer], bool, str | None]:  # fmt: skip
    stmt = select(Customer).where(Customer.org_id == principal.org_id)
    stmt = stmt.where(
        Customer.deleted_at.is_not(None) if deleted else Customer.deleted_at.is_(None)
    )
    if email is not None:
        stmt = stmt.where(Customer.email == email)
    return paginate(session, stmt, Customer.id, limit, cursor)


def delete(session: Session, principal: Principal, ref: str, clock: Clock) -> Customer:
    """Soft delete: hidden from lists, restorable for 30 days, refused while subscribed."""
    import kassa.subscriptions.service as subscriptions

    customer = resolve_active(session, principal.org_id, ref, lock=True)
    if subscriptions.has_live_subscriptions(session, principal.org_id, customer.id):
        raise errors.CustomerHasSubscriptions()
    customer.deleted_at = clock.now()
    session.flush()
    events.record(session, clock, principal.org_id, "customer.deleted", to_schema(customer))
    return customer


def restore(session: Session, principal: Principal, ref: str, clock: Clock) -> Customer:
    customer = resolve(session, principal.org_id, ref, lock=True)
    if customer.deleted_at is None:
        return customer
    if customer.deleted_at + RESTORE_WINDOW < clock.now():
        raise errors.RestoreWindowPassed()
    customer.deleted_at = None
    _flush_unique(session)
    events.record(session, clock, principal.org_id, "customer.updated", to_schema(customer))
    return customer


def anonymize(session: Session, principal: Principal, ref: str, clock: Clock) -> Customer:
    """Irreversibly replace personal data (also inside recorded event snapshots); keep
    ids, amounts, currency, tax status and country (needed for the books and VAT)."""
    customer = resolve(session, principal.org_id, ref, lock=True)
    if customer.anonymized_at is not None:
        return customer
    country = (customer.address or {}).get("country")
    customer.name = ANONYMIZED
    customer.email = customer.phone = customer.external_id = customer.tax_id = None
    customer.address = {"country": country} if country else None
    customer.metadata_ = {}
    customer.anonymized_at = customer.updated_at = clock.now()
    session.flush()
    snapshot = to_schema(customer).model_dump(mode="json")
    session.execute(
        update(DomainEvent)
        .where(
            DomainEvent.org_id == principal.org_id,
            DomainEvent.object_id == customer.id,
            DomainEvent.type.like(CUSTOMER_EVENTS),
        )
        .values(data=snapshot)
    )
    events.record(session, clock, principal.org_id, "customer.updated", snapshot)
    return customer


def export(session: Session, principal: Principal, ref: str) -> dict[str, Any]:
    """Everything Kassa holds on the customer (GDPR art. 15/20), as JSON-ready data."""
    import kassa.subscriptions.service as subscriptions

    customer = resolve(session, principal.org_id, ref)
    return {
        "object": "customer_export",
        "customer": to_schema(customer).model_dump(mode="json"),
        "subscriptions": [
            s.model_dump(mode="json")
            for s in subscriptions.export_for_customer(session, principal.org_id, customer.id)
        ],
        "events": [
            {"id": e.id, "type": e.type, "occurred_at": e.occurred_at.isoformat(), "data": e.data}
            for e in events.for_customer(session, principal.org_id, customer.id)
        ],
    }


def now_for(session: Session, customer: Customer, clock: Clock) -> datetime:
    """The customer's "now": its test clock's frozen time, or the real clock."""
    if customer.test_clock_id is None:
        return clock.now()
    from kassa.clocks import service as clocks

    return clocks.frozen_time(session, customer.org_id, customer.test_clock_id)
