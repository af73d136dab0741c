"""Opaque, prefixed, time-sortable identifiers (``cus_01J…``).

The body is a ULID: 48 bits of millisecond time then 80 random bits, Crockford base32.
Ids made in the same millisecond sort in random order among themselves, which keeps
cursor pagination correct (the order is total) while "newest first" is exact to the ms.
"""

from __future__ import annotations

import re

from ulid import ULID

PREFIXES = frozenset(
    {
        "org", "usr", "key", "cus", "plan", "mtr", "sub", "evt", "inv", "il", "cn", "pay", "pm",
        "cs", "re", "whe", "wh", "tc", "ltx", "cpn", "rt", "rtf",
    }
)  # fmt: skip

_ID_RE = re.compile(r"^[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}$")


def new_id(prefix: str) -> str:
    """Return a fresh id such as ``org_01JC6W3V6Y1J3S2Q0QXJ6M3T7D``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{ULID()}"


def looks_like_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of an id with ``prefix`` (no lookup)."""
    return value.startswith(prefix + "_") and _ID_RE.match(value) is not None
