"""Membership in a long list of strings, bound as one JSON parameter.

psycopg dumps a Python list into an array parameter item by item in Python; a hot path
that looks up thousands of customers per request spends more on that than on the query.
msgspec encodes the same list as one JSON text in C, and PostgreSQL unpacks it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Text, bindparam, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB

from kassa.core import jsoncodec


def among(column: Any, values: Collection[str], name: str) -> ColumnElement[bool]:
    """``column IN (values)`` with ``values`` bound as the JSON array parameter ``name``."""
    param = bindparam(name, jsoncodec.encode(list(values)), type_=Text)
    unpacked = select(func.jsonb_array_elements_text(cast(param, JSONB))).scalar_subquery()
    return column.in_(unpacked)  # type: ignore[no-any-return]
