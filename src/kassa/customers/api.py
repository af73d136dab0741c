"""Routes: /v1/customers (id or external_id wherever a customer is named)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from kassa.core.context import Principal
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from kassa.core.schemas import problem_responses
from kassa.customers import service
from kassa.customers.schemas import Customer, CustomerIn, CustomerPatch
from kassa.identity.auth import MANAGE, READ, WRITE, db, idempotent, runtime
from kassa.runtime import Runtime

router = APIRouter(
    prefix="/v1/customers",
    tags=["customers"],
    dependencies=[Depends(idempotent)],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)


@router.post("", status_code=201, response_model=Customer)
def create_customer(
    body: CustomerIn,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Customer:
    return service.to_schema(service.create(session, who, body, rt.clock))


@router.get("", response_model=Page[Customer])
def list_customers(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    email: str | None = Query(None, max_length=320),
    deleted: bool = Query(False, description="List soft-deleted customers instead"),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[Customer]:
    rows, has_more, next_cursor = service.list_customers(
        session, who, limit, cursor, email=email, deleted=deleted
    )
    return Page(
        data=[service.to_schema(c) for c in rows], has_more=has_more, next_cursor=next_cursor
    )


@router.get("/{customer}", response_model=Customer)
def get_customer(
    customer: str, who: Principal = Depends(READ), session: Session = Depends(db)
) -> Customer:
    return service.to_schema(service.resolve(session, who.org_id, customer))


@router.patch("/{customer}", response_model=Customer)
def update_customer(
    customer: str,
    body: CustomerPatch,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Customer:
    return service.to_schema(service.update_customer(session, who, customer, body, rt.clock))


@router.delete("/{customer}", response_model=Customer)
def delete_customer(
    customer: str,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Customer:
    return service.to_schema(service.delete(session, who, customer, rt.clock))


@router.post("/{customer}/restore", response_model=Customer)
def restore_customer(
    customer: str,
    who: Principal = Depends(WRITE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Customer:
    return service.to_schema(service.restore(session, who, customer, rt.clock))


@router.get("/{customer}/export")
def export_customer(
    customer: str, who: Principal = Depends(MANAGE), session: Session = Depends(db)
) -> dict[str, Any]:
    """Everything Kassa holds on this customer (GDPR access/portability), as JSON."""
    return service.export(session, who, customer)


@router.post("/{customer}/anonymize", response_model=Customer)
def anonymize_customer(
    customer: str,
    who: Principal = Depends(MANAGE),
    session: Session = Depends(db),
    rt: Runtime = Depends(runtime),
) -> Customer:
    """Irreversibly replace personal data; invoices and amounts are kept."""
    return service.to_schema(service.anonymize(session, who, customer, rt.clock))
