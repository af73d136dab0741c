"""Record domain events inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import Select, Table, select
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.ids import new_id, new_ids
from kassa.db import bulk
from kassa.events.models import CUSTOMER_EVENTS, DomainEvent


def record(
    session: Session,
    clock: Clock,
    org_id: str,
    type_: str,
    obj: BaseModel | dict[str, Any],
    occurred_at: datetime | None = None,
) -> DomainEvent:
    data = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
    now = clock.now()
    event = DomainEvent(
        org_id=org_id,
        id=new_id("wh"),
        type=type_,
        object_id=str(data.get("id", "")),
        data=data,
        occurred_at=occurred_at or now,
        created_at=now,
    )
    session.add(event)
    return event


_EVENTS = cast(Table, DomainEvent.__table__)
# the columns an event row carries (``org_id`` and ``created_at``, the same in every row of
# a statement, are bound once: ``stage``)
COLUMNS = ("id", "type", "object_id", "data", "occurred_at")


def stage(
    clock: Clock, org_id: str, events: Sequence[tuple[Any, ...]],
    extra: Sequence[tuple[str, str]] = (),
) -> bulk.Staged:  # fmt: skip
    """Many (type, JSON data, occurred_at, *more) events staged for one statement (more:
    values of ``extra``, (name, SQL type), the statement reads after the columns); their
    ids follow the order given, as ``record``'s follow the order of the calls."""
    ids = new_ids("wh", len(events))
    return bulk.stage(
        _EVENTS, COLUMNS,
        [
            (event_id, event[0], str(event[1].get("id", "")), event[1], event[2], *event[3:])
            for event_id, event in zip(ids, events, strict=True)
        ],
        extra, consts={"org_id": org_id, "created_at": clock.now()},
    )  # fmt: skip


def record_many(
    session: Session,
    clock: Clock,
    org_id: str,
    events: Sequence[tuple[str, dict[str, Any], datetime]],
) -> None:
    """``record`` for many events in one statement (see ``stage``)."""
    if events:
        bulk.insert_staged(session, stage(clock, org_id, events))


def for_customer(session: Session, org_id: str, customer_id: str) -> Sequence[DomainEvent]:
    """The events about a customer (``customer.*``, whose object is the customer), oldest
    first: a probe of their own index, not a read of the organization's events."""
    found: Sequence[DomainEvent] = session.scalars(customer_events(org_id, customer_id)).all()
    return found


def customer_events(org_id: str, customer_id: str) -> Select[Any]:
    return (
        select(DomainEvent)
        .where(
            DomainEvent.org_id == org_id, DomainEvent.object_id == customer_id,
            DomainEvent.type.like(CUSTOMER_EVENTS),
        )
        .order_by(DomainEvent.id)
    )  # fmt: skip
