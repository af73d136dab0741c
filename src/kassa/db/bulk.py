"""Writing many rows in a few statements: COPY into a temporary table (COPY FROM refuses
tables with row-level security), then one INSERT … SELECT or UPDATE … FROM, which the
row-level security policies and the table's triggers see as one ordinary statement.

Table and column names come from the callers' constants, never from input.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import JSON, ColumnElement, Table, Text, any_, bindparam, cast, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from kassa.core import jsoncodec


def among(
    column: ColumnElement[Any] | InstrumentedAttribute[Any], values: Iterable[str]
) -> ColumnElement[bool]:
    """``column IN (values)`` with the values bound as one JSON array parameter: one
    parameter however many values (``IN`` binds each one, and a statement with a different
    count is a different statement to prepare), encoded by msgspec in C (psycopg dumps a
    Python list into an array item by item: thousands per ingested batch).

    Compared as ``column = ANY(ARRAY(SELECT …))``: the array is computed once and the
    comparison is an index condition, so the rows are found by probing an index on
    ``column`` once per value. ``column IN (SELECT …)`` is a semi-join the planner orders
    by its estimates, and with a table's statistics stale or missing it would read the
    whole table (every account of an organization for a chunk's 200 codes)."""
    param = bindparam(None, jsoncodec.encode(list(values)), type_=Text, unique=True)
    unpacked = select(func.jsonb_array_elements_text(cast(param, JSONB))).scalar_subquery()
    return column == any_(func.array(unpacked))


def stage(
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
    json = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    with raw.cursor().copy(f"COPY {temp} ({cols}) FROM STDIN") as copy:
        if not json:
            for row in rows:
                copy.write_row(row)
        else:  # JSON columns as JSON text, encoded by msgspec (psycopg's Jsonb: the json
            # module); None is SQL NULL, Jsonb(None) the JSON null
            for row in rows:
                values = list(row)
                for i in json:
                    value = values[i]
                    if value is not None:
                        values[i] = jsoncodec.encode(value.obj if type(value) is Jsonb else value)
                copy.write_row(values)
    return temp


def insert(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]],
    *, conflict: str | None = None, returning: str | None = None,
) -> list[Any]:  # fmt: skip
    """INSERT ``rows``; ``conflict`` is an ON CONFLICT target and action ("(org_id, key)
    DO NOTHING"); with ``returning`` (one column) the values of the inserted rows."""
    if not rows:
        return []
    temp = stage(session, table, columns, rows)
    return insert_staged(session, table, columns, temp, conflict=conflict, returning=returning)


def insert_staged(
    session: Session, table: Table, columns: Sequence[str], temp: str, *,
    exprs: Mapping[str, str] | None = None, join: str = "", params: Mapping[str, Any] | None = None,
    conflict: str | None = None, returning: str | None = None,
) -> list[Any]:  # fmt: skip
    """INSERT the rows ``stage`` put into ``temp`` (alias ``s``); ``exprs`` computes some
    columns in SQL instead (column → expression, e.g. numbers from a counter taken since),
    ``join`` adds a FROM clause item, ``params`` binds the expressions' parameters."""
    cols = ", ".join(columns)
    values = ", ".join((exprs or {}).get(c, f"s.{c}") for c in columns)
    sql = f"INSERT INTO {table.name} ({cols}) SELECT {values} FROM {temp} s {join}"  # noqa: S608
    if conflict:
        sql += f" ON CONFLICT {conflict}"
    if returning:
        return list(session.scalars(text(f"{sql} RETURNING {returning}"), params or {}))
    session.execute(text(sql), params or {})
    return []


def update(
    session: Session, table: Table, key: Sequence[str], columns: Sequence[str],
    rows: Sequence[Sequence[Any]], *, where: str = "",
) -> int:  # fmt: skip
    """UPDATE the rows of ``table`` matching each row's ``key`` columns to its ``columns``
    (each row: key values, then column values); ``where`` adds a condition on the target
    (alias ``t``). Returns how many rows changed.

    The target rows are also bound by their key values as arrays (``t.id = ANY(…)``), so
    that however the planner orders the join, it reaches them through an index on the key
    and reads no more of ``table`` than the rows given (a join led by the target's side,
    e.g. every draft of an organization through an index of drafts, would read them all
    for each chunk)."""
    if not rows:
        return 0
    temp = stage(session, table, [*key, *columns], rows)
    sets = ", ".join(f"{c} = s.{c}" for c in columns)
    match = " AND ".join(f"t.{k} = s.{k}" for k in key)
    bound = " AND ".join(f"t.{k} = ANY(CAST(:k{n} AS varchar[]))" for n, k in enumerate(key))
    sql = f"UPDATE {table.name} t SET {sets} FROM {temp} s WHERE {match} AND {bound}"  # noqa: S608
    if where:
        sql += f" AND {where}"
    params = {f"k{n}": sorted({str(row[n]) for row in rows}) for n in range(len(key))}
    result = session.execute(text(sql), params)
    return int(result.rowcount)  # type: ignore[attr-defined]
