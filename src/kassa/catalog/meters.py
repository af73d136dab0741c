"""Meter use cases (the metering pipeline that fills them arrives with usage ingestion)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.catalog import errors, schemas
from kassa.catalog.models import Meter
from kassa.core.clock import Clock
from kassa.core.context import Principal
from kassa.core.ids import looks_like_id, new_id
from kassa.core.pagination import paginate
from kassa.db import cache
from kassa.db.unique import flush_unique


def to_schema(m: Meter) -> schemas.Meter:
    return schemas.Meter(
        id=m.id, event_name=m.event_name, name=m.name, aggregation=m.aggregation,
        value_property=m.value_property, unique_property=m.unique_property, unit=m.unit,
        filters=m.filters, lateness_seconds=m.lateness_seconds,
        anomaly_multiplier=str(m.anomaly_multiplier) if m.anomaly_multiplier is not None else None,
        anomaly_min_periods=m.anomaly_min_periods, created_at=m.created_at,
    )  # fmt: skip


def create(session: Session, principal: Principal, data: schemas.MeterIn, clock: Clock) -> Meter:
    meter = Meter(
        org_id=principal.org_id, id=new_id("mtr"), event_name=data.event_name, name=data.name,
        aggregation=data.aggregation, value_property=data.value_property,
        unique_property=data.unique_property, unit=data.unit, filters=data.filters,
        lateness_seconds=data.lateness_seconds, anomaly_min_periods=data.anomaly_min_periods,
        anomaly_multiplier=Decimal(data.anomaly_multiplier) if data.anomaly_multiplier else None,
        created_at=clock.now(),
    )  # fmt: skip
    session.add(meter)
    flush_unique(
        session, lambda _: errors.DuplicateCode(detail=f"A meter for {data.event_name!r} exists.")
    )
    return meter


def resolve(session: Session, org_id: str, ref: str) -> Meter:
    """A meter by id or event_name."""
    column = Meter.id if looks_like_id(ref, "mtr") else Meter.event_name
    meter = session.scalars(
        select(Meter).where(Meter.org_id == org_id, column == ref)
    ).one_or_none()
    if meter is None:
        raise errors.MeterNotFound(detail=f"No meter {ref!r} in this organization.")
    return meter


def by_ids(session: Session, org_id: str, ids: Sequence[str]) -> dict[str, Meter]:
    """Meters by id (loaded once per transaction)."""
    found = {}
    for meter_id in set(ids):
        meter = cache.get(session, Meter, (org_id, meter_id))
        if meter is not None:
            found[meter_id] = meter
    return found


def list_meters(
    session: Session, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[Meter], bool, str | None]:
    stmt = select(Meter).where(Meter.org_id == principal.org_id)
    return paginate(session, stmt, Meter.id, limit, cursor)
