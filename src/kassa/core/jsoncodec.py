"""JSON on the ingestion hot path, with msgspec: a 10 000-event batch is decoded and its
properties re-encoded in C. Numbers with a fraction or exponent decode to ``Decimal`` (never
float, so a usage value keeps every digit it was sent with) and encode back as the same
JSON number. Everything else (responses, canonical hashes) stays with FastAPI and the
standard library."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")

DecodeError = msgspec.DecodeError


def decode_exact(data: bytes | str) -> Any:
    """Parse JSON; raises ``DecodeError`` (a ``ValueError``) or ``RecursionError``."""
    return _decoder.decode(data)


def encode(value: object) -> str:
    """Compact JSON text (Decimals as numbers)."""
    return _encoder.encode(value).decode()
