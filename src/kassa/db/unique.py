"""Uniqueness that the database decides (never check-then-create)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def flush_unique(session: Session, conflict: Callable[[IntegrityError], Exception]) -> None:
    """Flush pending rows in a savepoint; a unique violation becomes ``conflict(error)``
    (a 409 naming what was taken) and leaves the outer transaction usable."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise conflict(exc) from None
