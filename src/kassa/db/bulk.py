"""Writing many rows in one statement: the rows travel as one JSON parameter (an array of
arrays, encoded by msgspec in C) and are unpacked by ``jsonb_array_elements`` into a row
source for one INSERT … SELECT or UPDATE … FROM, which the row-level security policies and
the table's triggers see as one ordinary statement. (COPY FROM refuses tables with
row-level security; copying into a temporary table first cost four round trips per table
and a Python call per row and value to format it.)

Table and column names come from the callers' constants, never from input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import JSON, ColumnElement, Table, Text, any_, bindparam, cast, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from kassa.core import jsoncodec

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


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


@dataclass(frozen=True)
class Staged:
    """Rows shaped like ``table``'s ``columns``, ready to be a statement's row source:
    ``source()`` is the SQL, ``params`` its bound parameters (the rows as one, then one per
    column whose value all rows share: ``consts``)."""

    table: Table
    columns: tuple[str, ...]  # the rows' columns, then the shared ones
    params: dict[str, Any]
    _param: str
    extra: tuple[tuple[str, str], ...] = ()  # (name, SQL type) after the table's columns
    consts: tuple[str, ...] = ()  # the last columns of ``columns``, one value each

    def source(self) -> str:
        """``(SELECT … FROM jsonb_array_elements(…)) s``: each column cast to its type
        (a nullable JSON column's value is wrapped in a one-element array, so that SQL NULL
        and the JSON null stay apart); a shared column is its parameter, cast alike."""
        fields = []
        shared = len(self.columns) - len(self.consts)
        for n, column in enumerate(self.columns[:shared]):
            kind = self.table.c[column].type
            if isinstance(kind, JSON):
                fields.append(f"r->{n}->0 AS {column}" if _wrapped(self.table, column)
                              else f"r->{n} AS {column}")  # fmt: skip
            else:
                fields.append(f"CAST(r->>{n} AS {_sql_type(self.table, column)}) AS {column}")
        for n, (name, sql_type) in enumerate(self.extra, start=shared):
            fields.append(f"CAST(r->>{n} AS {sql_type}) AS {name}")
        for column in self.consts:
            fields.append(
                f"CAST(:{self._param}_{column} AS {_sql_type(self.table, column)}) AS {column}"
            )
        return (
            f"(SELECT {', '.join(fields)} FROM jsonb_array_elements("  # noqa: S608
            f"CAST(:{self._param} AS jsonb)) r) s"
        )


def stage(
    table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]],
    extra: Sequence[tuple[str, str]] = (), consts: Mapping[str, Any] | None = None,
) -> Staged:  # fmt: skip
    """``rows`` (values in ``columns`` order, then ``extra``'s: (name, SQL type) of values
    a statement reads but does not store) encoded for one statement; ``consts``: the
    values of more columns, the same in every row (each bound once, not repeated in every
    row: the server parses every byte of the rows). In a nullable JSON column None is SQL
    NULL and ``Jsonb(None)`` the JSON null; a JSON column that is NOT NULL takes its value
    as it is."""
    json = [i for i, c in enumerate(columns) if _wrapped(table, c)]
    if json:
        rows = [_wrap_json(row, json) for row in rows]
    name = f"rows_{table.name}"  # one staged source per table in a statement
    params: dict[str, Any] = {name: jsoncodec.encode(list(rows))}
    for column, value in (consts or {}).items():
        if value is not None and isinstance(table.c[column].type, JSON):
            value = jsoncodec.encode(value.obj if type(value) is Jsonb else value)
        params[f"{name}_{column}"] = value  # (None: SQL NULL)
    return Staged(
        table, (*columns, *(consts or {})), params, name, tuple(extra), tuple(consts or {})
    )


@functools.cache  # compiled once per column, not for every statement of every chunk
def _sql_type(table: Table, column: str) -> str:
    return str(table.c[column].type.compile(dialect=_DIALECT))


def _wrapped(table: Table, column: str) -> bool:
    return isinstance(table.c[column].type, JSON) and bool(table.c[column].nullable)


def _wrap_json(row: Sequence[Any], json: Sequence[int]) -> list[Any]:
    values = list(row)
    for i in json:
        value = values[i]
        if value is not None:
            values[i] = [value.obj if type(value) is Jsonb else value]
    return values


def insert_staged(
    session: Session, staged: Staged, *, exprs: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    """INSERT the ``staged`` rows (alias ``s``); ``exprs`` computes some columns in SQL
    instead (column → expression, e.g. numbers from a counter taken since), ``params``
    binds the expressions' parameters."""
    cols = ", ".join(staged.columns)
    values = ", ".join((exprs or {}).get(c, f"s.{c}") for c in staged.columns)
    sql = f"INSERT INTO {staged.table.name} ({cols}) SELECT {values} FROM {staged.source()}"  # noqa: S608
    session.execute(text(sql), {**staged.params, **(params or {})})


def update(
    session: Session, table: Table, key: Sequence[str], columns: Sequence[str],
    rows: Sequence[Sequence[Any]], *, where: str = "", consts: Mapping[str, Any] | None = None,
) -> int:  # fmt: skip
    """UPDATE the rows of ``table`` matching each row's ``key`` columns to its ``columns``
    (each row: key values, then column values, but those of ``consts``: the same for all
    rows, bound once); ``where`` adds a condition on the target (alias ``t``). Returns how
    many rows changed.

    The target rows are also bound by their key values as arrays (``t.id = ANY(…)``), so
    that however the planner orders the join, it reaches them through an index on the key
    and reads no more of ``table`` than the rows given (a join led by the target's side,
    e.g. every draft of an organization through an index of drafts, would read them all
    for each chunk)."""
    if not rows:
        return 0
    consts = consts or {}
    carried = [c for c in (*key, *columns) if c not in consts]
    staged = stage(table, carried, rows, consts=consts)
    sets = ", ".join(f"{c} = s.{c}" for c in columns)
    match = " AND ".join(f"t.{k} = s.{k}" for k in key)  # (a shared key: one value, bound)
    varying = [(n, k) for n, k in enumerate(carried) if k in key]
    bound = "".join(
        f" AND t.{k} = ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(:k{n} AS jsonb))))"
        for n, k in varying
    )
    sql = f"UPDATE {table.name} t SET {sets} FROM {staged.source()} WHERE {match}{bound}"  # noqa: S608
    if where:
        sql += f" AND {where}"
    params = {f"k{n}": jsoncodec.encode(sorted({str(row[n]) for row in rows})) for n, _ in varying}
    result = session.execute(text(sql), {**staged.params, **params})
    return int(result.rowcount)  # type: ignore[attr-defined]
