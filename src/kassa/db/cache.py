"""Rows by primary key, loaded once per session (that is, per transaction).

The session's identity map holds objects weakly: a plan looked up, used and dropped is gone
again by the next lookup, which then asks the database. A billing chunk looks up the same few
plans, versions, meters and the organization for every subscription, so this keeps what was
loaded alive for the session's lifetime. The objects are the session's own (the identity map
returns the same ones), so changes made in the transaction are seen.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, inspect
from sqlalchemy.orm import Session

T = TypeVar("T")


def get(session: Session, model: type[T], key: Any) -> T | None:
    cache: dict[tuple[type[Any], Any], Any] = session.info.setdefault("kassa_pk_cache", {})
    found = cache.get((model, key))
    if found is None:
        found = session.get(model, key)
        if found is not None:
            cache[(model, key)] = found
    return found


def load(session: Session, stmt: Select[Any]) -> list[Any]:
    """The rows ``stmt`` selects (one model), kept as ``get`` keeps what it loads: one
    query for many rows that ``get`` is then asked for one at a time."""
    rows = list(session.scalars(stmt))
    cache: dict[tuple[type[Any], Any], Any] = session.info.setdefault("kassa_pk_cache", {})
    for row in rows:
        cache[(type(row), inspect(row).identity)] = row
    return rows
