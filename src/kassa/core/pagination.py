"""Cursor pagination: ``{data, has_more, next_cursor}``, newest first.

The cursor is the opaque (base64url) id of the last row returned; ids are time-sortable,
so ``id < cursor ORDER BY id DESC`` walks the list without offsets and without skipping
or repeating rows while new rows arrive.
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

from kassa.core.errors import field_error

T = TypeVar("T")
_CURSOR_ID = re.compile(r"[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Page(BaseModel, Generic[T]):
    object: str = "list"
    data: list[T]
    has_more: bool
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise field_error("cursor", "is not a cursor returned by this list") from None
    if not _CURSOR_ID.fullmatch(value):
        raise field_error("cursor", "is not a cursor returned by this list")
    return value


def paginate(
    session: Session,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Any], bool, str | None]:
    """Run ``stmt`` newest first; return (rows, has_more, next_cursor)."""
    if cursor:
        stmt = stmt.where(id_column < decode_cursor(cursor))
    rows = session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(getattr(rows[-1], id_column.key)) if has_more and rows else None
    return rows, has_more, next_cursor
