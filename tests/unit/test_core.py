from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kassa.core import ids as ids_module
from kassa.core.errors import ValidationFailed
from kassa.core.ids import PREFIXES, looks_like_id, new_id, new_ids
from kassa.core.logging import REDACTED, redact, scrub_text
from kassa.core.pagination import decode_cursor, encode_cursor
from kassa.orgs import rules as org_rules


def test_ids_are_prefixed_and_time_sortable() -> None:
    ids = [new_id("cus") for _ in range(50)]
    assert all(re.fullmatch(r"cus_[0-9A-Z]{26}", i) for i in ids)
    assert len(set(ids)) == 50
    assert looks_like_id(ids[0], "cus") and not looks_like_id(ids[0], "inv")
    import time

    earlier = new_id("inv")
    time.sleep(0.002)
    assert new_id("inv") > earlier
    burst = [new_id("il") for _ in range(1000)]  # many per millisecond: still in order
    assert burst == sorted(burst)
    with pytest.raises(ValueError, match="unknown id prefix"):
        new_id("nope")


@given(st.integers(min_value=0, max_value=2**127), st.integers(min_value=1, max_value=3000))
def test_bulk_ids_encode_exactly_like_single_ones(start: int, count: int) -> None:
    """new_ids' incremental tail encoding equals the full encoding, across 2^20 carries."""
    saved = ids_module._next
    ids_module._next = lambda n: start  # type: ignore[assignment]
    try:
        bulk = new_ids("evt", count)
    finally:
        ids_module._next = saved
    assert bulk == [f"evt_{ids_module._encode(start + i)}" for i in range(count)]
    fresh = new_ids("evt", 100)
    assert fresh == sorted(set(fresh)) and all(looks_like_id(i, "evt") for i in fresh)


@given(st.sampled_from(sorted(PREFIXES)))
def test_cursor_round_trips(prefix: str) -> None:
    value = new_id(prefix)
    assert decode_cursor(encode_cursor(value, "things.id"), "things.id") == value


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!not base64!!!",
        "AA",
        encode_cursor("usr_\x00" + "A" * 25, "users.id"),
        encode_cursor("cus_01M96PYS22C7PYJ1NDEQCSCAQQ", "customers.id"),  # another list's
        encode_cursor("usr_01M96PYS22C7PYJ1NDEQCSCAQQ", "users.id:users.id"),
    ],
)
def test_a_bad_cursor_names_the_field(cursor: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor, "users.id")
    assert caught.value.errors[0].field == "cursor"
    assert caught.value.problem()["code"] == "invalid_cursor"


def test_redaction_by_key_and_by_content() -> None:
    event = redact(
        None,
        "info",
        {
            "event": "mail to ann@example.org",
            "password": "x",
            "refresh_token": "rt_x",
            "owner_email": "b@c.de",
            "refresh_tokens": 3,
            "headers": {"authorization": "Bearer abc", "accept": "json"},
            "note": "key sk_live_abc123 and phone (555) 123-4567",
        },
    )
    assert event["event"] == f"mail to {REDACTED}"
    assert event["password"] == event["refresh_token"] == event["owner_email"] == REDACTED
    assert event["refresh_tokens"] == 3
    assert event["headers"] == {"authorization": REDACTED, "accept": "json"}
    assert "sk_live" not in event["note"] and "4567" not in event["note"]
    plain = "on 2026-11-22 at 12:00, 1500 events"
    assert scrub_text(plain) == plain


def test_org_setting_rules() -> None:
    assert org_rules.is_country("DE") and not org_rules.is_country("XX")
    assert org_rules.is_currency("jpy") and not org_rules.is_currency("abc")
    assert org_rules.is_timezone("America/New_York") and not org_rules.is_timezone("Mars/Base")
    assert org_rules.invoice_prefix_for("Acme Rentals GmbH") == "ACME"
    assert org_rules.invoice_prefix_for("Ünïcode Cars") == "UNICODE"
    assert org_rules.invoice_prefix_for("!!!") == "INV"
