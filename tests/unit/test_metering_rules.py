"""The batch endpoint's two parsers agree: the fast typed path (msgspec structs) accepts a
body only when every event in it is well formed, and then parses each event exactly as the
generic path does; anything else falls back to the generic path, which names each fault."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kassa.core import jsoncodec
from kassa.metering.rules import MAX_BATCH, MeterSpec, Rejection, decode_batch, parse_event

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SKEW = timedelta(minutes=5)
METERS = {
    "calls": MeterSpec("mtr_calls", "calls", "count"),
    "gb": MeterSpec("mtr_gb", "gb", "sum", value_property="gb"),
    "users": MeterSpec("mtr_users", "users", "unique_count", unique_property="user"),
    "eu_calls": MeterSpec("mtr_eu", "eu_calls", "count", filters={"region": ("eu",)}),
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.text(max_size=8), st.sampled_from(["eu", "us", "1.5", "u1"]),
)  # fmt: skip
property_names = st.sampled_from(["gb", "user", "region", "other"])
events = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=0, max_size=6),
        "customer": st.sampled_from(["c1", "cus_x", ""]),
        "event_name": st.sampled_from([*METERS, "nope"]),
        "timestamp": st.one_of(
            st.datetimes(
                min_value=datetime(2025, 1, 1),  # noqa: DTZ001 (naive bounds, as hypothesis wants)
                max_value=datetime(2026, 4, 1),  # noqa: DTZ001
                timezones=st.just(UTC),
            ).map(datetime.isoformat),
            st.sampled_from(["2026-01-01T00:00:00", "yesterday", "2026-02-30T00:00:00Z"]),
        ),
    },
    optional={
        "properties": st.one_of(st.none(), st.dictionaries(property_names, scalars, max_size=4)),
        "extra": st.just(1),
    },
)


def parse_all(body: bytes, typed: list[Any] | None) -> list[object]:
    raw = typed if typed is not None else jsoncodec.decode_exact(body)["events"]
    return [parse_event(e, i, METERS, NOW, SKEW) for i, e in enumerate(raw)]


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=6))
def test_fast_path_parses_exactly_like_the_generic_path(batch: list[dict[str, Any]]) -> None:
    body = json.dumps({"events": batch}).encode()
    typed = decode_batch(body)
    generic = parse_all(body, None)
    if typed is None:
        # only bodies with a structural fault (or a NUL escape somewhere) fall back
        assert (
            b"\\u0000" in body
            or any("extra" in e or not e["event_id"] or not e["customer"] for e in batch)
            or any(isinstance(p, Rejection) and p.code == "invalid_event" for p in generic)
        )
        return
    assert parse_all(body, typed) == generic


def test_a_faulty_or_oversized_body_takes_the_generic_path() -> None:
    good = {"event_id": "e1", "customer": "c1", "event_name": "calls",
            "timestamp": "2026-03-01T11:00:00Z"}  # fmt: skip
    assert decode_batch(json.dumps({"events": [good]}).encode()) is not None
    assert decode_batch(json.dumps({"events": [good, {**good, "event_id": 7}]}).encode()) is None
    assert decode_batch(json.dumps({"events": [good], "more": 1}).encode()) is None
    assert decode_batch(json.dumps({"events": [good] * (MAX_BATCH + 1)}).encode()) is None
    nul = {**good, "properties": {"note": "a\u0000b"}}
    assert decode_batch(json.dumps({"events": [nul]}).encode()) is None
    assert decode_batch(b"{not json") is None


def test_the_fast_path_keeps_decimals_exact() -> None:
    body = (
        b'{"events": [{"event_id": "e", "customer": "c1", "event_name": "gb",'
        b' "timestamp": "2026-03-01T11:00:00Z", "properties": {"gb": 123456789012.123456789012}}]}'
    )  # 27 significant digits (the most the value bounds allow): a float would keep 17
    typed = decode_batch(body)
    assert typed is not None
    parsed = parse_event(typed[0], 0, METERS, NOW, SKEW)
    assert not isinstance(parsed, Rejection)
    assert str(parsed.value) == "123456789012.123456789012"
