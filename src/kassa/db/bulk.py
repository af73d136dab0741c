"""Writing many rows in a few statements: COPY into a temporary table (COPY FROM refuses
tables with row-level security), then one INSERT … SELECT or UPDATE … FROM, which the
row-level security policies and the table's triggers see as one ordinary statement.

Table and column names come from the callers' constants, never from input.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import ColumnElement, String, Table, any_, literal, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session


def among(
    column: ColumnElement[str] | InstrumentedAttribute[str], values: Iterable[str]
) -> ColumnElement[bool]:
    """``column = ANY(:array)``: one parameter however many values (``IN`` binds each one,
    and a statement with a different count is a different statement to prepare)."""
    return column == any_(literal(list(values), ARRAY(String)))


def _stage(
    session: Session, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> str:
    """A temporary table shaped like ``table``'s ``columns`` (per connection, emptied at
    commit and before each use) holding ``rows``; returns its name."""
    cols = ", ".join(columns)
    temp = f"bulk_{table.name}_{zlib.crc32(cols.encode()):08x}"
    create = f"CREATE TEMPORARY TABLE IF NOT EXISTS {temp} ON COMMIT DELETE ROWS AS"
    session.execute(text(f"{create} SELECT {cols} FROM {table.name} WITH NO DATA"))  # noqa: S608
    session.execute(text(f"DELETE FROM {temp}"))  # noqa: S608
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor().copy(f"COPY {temp} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([Jsonb(v) if isinstance(v, dict | list) else v for v in row])
    return temp


def insert(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]],
    *, conflict: str | None = None, returning: str | None = None,
) -> list[Any]:  # fmt: skip
    """INSERT ``rows``; ``conflict`` is an ON CONFLICT target and action ("(org_id, key)
    DO NOTHING"); with ``returning`` (one column) the values of the inserted rows."""
    if not rows:
        return []
    temp = _stage(session, table, columns, rows)
    cols = ", ".join(columns)
    sql = f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {temp}"  # noqa: S608
    if conflict:
        sql += f" ON CONFLICT {conflict}"
    if returning:
        return list(session.scalars(text(f"{sql} RETURNING {returning}")))
    session.execute(text(sql))
    return []


def update(
    session: Session, table: Table, key: Sequence[str], columns: Sequence[str],
    rows: Sequence[Sequence[Any]], *, where: str = "",
) -> int:  # fmt: skip
    """UPDATE the rows of ``table`` matching each row's ``key`` columns to its ``columns``
    (each row: key values, then column values); ``where`` adds a condition on the target
    (alias ``t``). Returns how many rows changed."""
    if not rows:
        return 0
    temp = _stage(session, table, [*key, *columns], rows)
    sets = ", ".join(f"{c} = s.{c}" for c in columns)
    match = " AND ".join(f"t.{k} = s.{k}" for k in key)
    sql = f"UPDATE {table.name} t SET {sets} FROM {temp} s WHERE {match}"  # noqa: S608
    if where:
        sql += f" AND {where}"
    result = session.execute(text(sql))
    return int(result.rowcount)  # type: ignore[attr-defined]
