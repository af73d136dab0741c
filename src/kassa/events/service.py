"""Record domain events inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.ids import new_id, new_ids
from kassa.db import bulk
from kassa.events.models import DomainEvent


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


COLUMNS = ("org_id", "id", "type", "object_id", "data", "occurred_at", "created_at")


def rows_of(clock: Clock, org_id: str, events: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows (``COLUMNS``) of many (type, JSON data, occurred_at, *more) events (more:
    values the caller's statement reads after the columns); their ids follow the order
    given, as ``record``'s follow the order of the calls."""
    now = clock.now()
    ids = new_ids("wh", len(events))
    return [
        (org_id, event_id, event[0], str(event[1].get("id", "")), event[1], event[2], now,
         *event[3:])
        for event_id, event in zip(ids, events, strict=True)
    ]  # fmt: skip


def record_many(
    session: Session,
    clock: Clock,
    org_id: str,
    events: Sequence[tuple[str, dict[str, Any], datetime]],
) -> None:
    """``record`` for many events in one statement (see ``rows_of``)."""
    bulk.insert(
        session,
        DomainEvent.__table__,  # type: ignore[arg-type]
        COLUMNS,
        rows_of(clock, org_id, events),
    )


def for_object(session: Session, org_id: str, object_id: str) -> Sequence[DomainEvent]:
    return session.scalars(
        select(DomainEvent)
        .where(DomainEvent.org_id == org_id, DomainEvent.object_id == object_id)
        .order_by(DomainEvent.id)
    ).all()
