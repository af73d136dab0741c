"""Opaque, prefixed, time-sortable identifiers (``cus_01J…``).

The body is a ULID (48 bits of millisecond time, then 80 random bits, Crockford base32).
Ids made in the same millisecond sort in random order among themselves, which keeps
cursor pagination correct (the order is total) while "newest first" is exact to the ms.
:func:`new_ids` makes many at once, monotonic within the batch (ingestion makes 10 000
per request, so it encodes with the C base32 codec instead of per-id Python code).
"""

from __future__ import annotations

import base64
import os
import re
import time

PREFIXES = frozenset(
    {
        "org", "usr", "key", "cus", "plan", "mtr", "sub", "evt", "inv", "il", "cn", "pay", "pm",
        "cs", "re", "whe", "wh", "tc", "ltx", "cpn", "rt", "rtf", "mp", "mr",
    }
)  # fmt: skip

_ID_RE = re.compile(r"^[a-z]{2,4}_[0-9A-HJKMNP-TV-Z]{26}$")


_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _encode(value: int) -> str:
    """128 bits → 26 Crockford base32 characters (two leading zero bits, as ULID does)."""
    raw = base64.b32encode((value << 30).to_bytes(20, "big")).decode()
    return raw[:26].translate(_CROCKFORD)


def new_id(prefix: str) -> str:
    """Return a fresh id such as ``org_01JC6W3V6Y1J3S2Q0QXJ6M3T7D``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    ms = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode((ms << 80) | int.from_bytes(os.urandom(10), 'big'))}"


def new_ids(prefix: str, count: int) -> list[str]:
    """``count`` fresh ids, strictly increasing (one random start, then +1 each)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    ms = time.time_ns() // 1_000_000
    start = (ms << 80) | (int.from_bytes(os.urandom(10), "big") >> 1)  # room to count up
    return [f"{prefix}_{_encode(start + i)}" for i in range(count)]


def looks_like_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of an id with ``prefix`` (no lookup)."""
    return value.startswith(prefix + "_") and _ID_RE.match(value) is not None
