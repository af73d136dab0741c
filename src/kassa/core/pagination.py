"""Cursor pagination: ``{data, has_more, next_cursor}``, newest first.

The cursor is the opaque (base64url) id of the last row returned, with the list it came
from (``customers.id:cus_…``); ids are time-sortable, so ``id < cursor ORDER BY id DESC``
walks the list without offsets and without skipping or repeating rows while new rows
arrive. A cursor of another list (or anything not made here) is refused with 422
``invalid_cursor``: ids of different kinds compare as plain strings, so another list's
cursor would silently page from an arbitrary position.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kassa.core.errors import ValidationFailed, field_error

T = TypeVar("T")
_CURSOR_ID = re.compile(r"[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Page(BaseModel, Generic[T]):
    object: str = "list"
    data: list[T]
    has_more: bool
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


def _invalid() -> ValidationFailed:
    return field_error("cursor", "is not a cursor returned by this list", code="invalid_cursor")


def encode_cursor(last_id: str, scope: str) -> str:
    """The cursor after ``last_id`` in the list named ``scope`` (``table.column``)."""
    return base64.urlsafe_b64encode(f"{scope}:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str) -> str:
    """The id a cursor of the list ``scope`` points after; 422 ``invalid_cursor`` for
    anything else, including a well-formed cursor of another list."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid() from None
    prefix, _, last_id = value.rpartition(":")
    if prefix != scope or not _CURSOR_ID.fullmatch(last_id):
        raise _invalid()
    return last_id


def scope_of(id_column: InstrumentedAttribute[str]) -> str:
    """The name of the list a column pages: its table and column (``customers.id``)."""
    return f"{id_column.class_.__tablename__}.{id_column.key}"


def paginate(
    session: Session,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Any], bool, str | None]:
    """Run ``stmt`` newest first; return (rows, has_more, next_cursor)."""
    scope = scope_of(id_column)
    if cursor:
        stmt = stmt.where(id_column < decode_cursor(cursor, scope))
    rows = session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    last = getattr(rows[-1], id_column.key) if has_more and rows else None
    next_cursor = encode_cursor(last, scope) if last is not None else None
    return rows, has_more, next_cursor
