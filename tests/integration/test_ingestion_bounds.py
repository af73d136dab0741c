"""Ingestion bounds and inputs that answered 500 (issue 13, sections 2 and 3): each is now a
4xx naming the field, or a batch rejection naming the event's index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant, make_customer, make_plan, make_subscription, signup
from tests.integration.test_metering import meter

VALUE_MESSAGE = "must be a finite decimal with absolute value below 10^15 and at most 12 decimal"


@pytest.fixture(scope="module")
def setup(client: TestClient) -> tuple[TestClient, Tenant, str]:
    """One organization for the module (each test's events are refused, or its own)."""
    tenant = signup(client, name="Bounds Org")
    customer = make_customer(client, tenant)["id"]
    meter(client, tenant, "api_calls", "sum", value_property="n")
    return client, tenant, customer


def event(customer: str, event_id: str, **properties: Any) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(minutes=1)
    return {
        "event_id": event_id,
        "customer": customer,
        "event_name": "api_calls",
        "timestamp": at.isoformat(),
        "properties": properties,
    }


def one(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return client.post("/v1/events", json=body, headers=tenant.headers)


def rejected(client: TestClient, tenant: Tenant, events: list[dict[str, Any]]) -> list[Any]:
    response = client.post("/v1/events/batch", json={"events": events}, headers=tenant.headers)
    assert response.status_code == 202, response.text
    return [(r["index"], r["code"], r["message"]) for r in response.json()["rejected"]]


def assert_field(response: Any, status: int, code: str, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = dict(response.json())
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == code
    assert [e["field"] for e in body["errors"]] == [field]
    return body


@pytest.mark.parametrize(
    "value", ["1e999999999", 2**70, "1e308", 1e300, "1000000000000000", "0.0000000000001", "-1e15"]
)
def test_a_value_out_of_bounds_is_refused_naming_the_property(
    setup: tuple[TestClient, Tenant, str], value: Any
) -> None:
    client, tenant, customer = setup
    body = assert_field(
        one(client, tenant, event(customer, "e1", n=value)), 422, "invalid_value", "properties.n"
    )
    assert VALUE_MESSAGE in body["detail"]
    ok = event(customer, "e2", n=1)
    assert rejected(client, tenant, [ok, event(customer, "e3", n=value)]) == [
        (1, "invalid_value", body["detail"])
    ]


def test_values_at_the_bounds_are_accepted_exactly(setup: tuple[TestClient, Tenant, str]) -> None:
    client, tenant, _ = setup
    customer = make_customer(client, tenant)["id"]
    values = [
        "999999999999999.999999999999",
        "-999999999999999.999999999999",
        "1.500000000000000000",
        "2E+3",
        999_999_999_999_999,
    ]
    events = [event(customer, f"ok{i}", n=v) for i, v in enumerate(values)]
    assert rejected(client, tenant, events) == []
    listed = client.get("/v1/events", params={"customer": customer}, headers=tenant.headers).json()[
        "data"
    ]
    stored = {e["event_id"]: e["value"] for e in listed}
    assert stored == {
        "ok0": "999999999999999.999999999999",
        "ok1": "-999999999999999.999999999999",
        "ok2": "1.500000000000",
        "ok3": "2000",
        "ok4": "999999999999999",
    }


def test_a_raw_non_utf8_byte_in_a_batch_is_a_422(setup: tuple[TestClient, Tenant, str]) -> None:
    client, tenant, customer = setup
    text = '{"events": [{"event_id": "x", "customer": "' + customer + '", "event_name": '
    text += '"api_calls", "timestamp": "2026-01-01T00:00:00Z", "properties": {"s": "a\xffb"}}]}'
    response = client.post(
        "/v1/events/batch",
        content=text.encode("latin-1"),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert_field(response, 422, "validation_error", "body")


@pytest.mark.parametrize("nested", ["[" * 20000 + "]" * 20000, '{"a":' * 20000 + "1" + "}" * 20000])
def test_csv_properties_nested_too_deep_are_a_rejected_row(
    setup: tuple[TestClient, Tenant, str], nested: str
) -> None:
    """Found probing the merged code: a CSV row's properties_json nested deeper than the
    decoder goes raised RecursionError (500); the JSON body paths already refused it."""
    client, tenant, customer = setup
    quoted = nested.replace('"', '""')
    text = "event_id,customer,event_name,timestamp,value,properties_json\n"
    text += f'deep,{customer},api_calls,2026-01-01T00:00:00Z,1,"{quoted}"\n'
    response = client.post(
        "/v1/events/import",
        content=text.encode(),
        headers={**tenant.headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 202, response.text
    assert [(r["index"], r["code"]) for r in response.json()["rejected"]] == [(1, "invalid_row")]


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00+10:00", "2026-01-01T00:00:00-16:00"]
)
def test_a_timestamp_postgres_cannot_hold_is_refused(
    setup: tuple[TestClient, Tenant, str], stamp: str
) -> None:
    client, tenant, customer = setup
    body = {**event(customer, "t1", n=1), "timestamp": stamp}
    assert_field(one(client, tenant, body), 422, "invalid_timestamp", "timestamp")
    assert [r[:2] for r in rejected(client, tenant, [body])] == [(0, "invalid_timestamp")]


def test_events_before_1970_are_refused(setup: tuple[TestClient, Tenant, str]) -> None:
    client, tenant, customer = setup
    body = {**event(customer, "old", n=1), "timestamp": "1969-12-31T23:59:59Z"}
    assert_field(one(client, tenant, body), 422, "invalid_timestamp", "timestamp")


@pytest.mark.parametrize(
    ("field", "stamp"),
    [("from", "0001-01-01T00:00:00+06:00"), ("to", "9999-12-31T23:59:59-06:00")],
)
def test_a_usage_window_outside_years_1_to_9999_in_utc_is_refused(
    setup: tuple[TestClient, Tenant, str], field: str, stamp: str
) -> None:
    """Found by the deep fuzzing run on the merged code: the instant is valid with its
    offset but not in UTC, and computing the window overflowed (500)."""
    client, tenant, customer = setup
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", field: stamp}
    for extra in ({}, {"group_by": "region"}):
        response = client.get(
            f"/v1/customers/{customer}/usage",
            params={"meter": "api_calls", **window, **extra},
            headers=tenant.headers,
        )
        assert_field(response, 422, "validation_error", field)


@pytest.mark.parametrize(
    ("properties", "field", "message"),
    [
        ({"note": "x" * 1001}, "properties.note", "strings must be at most 1000 characters"),
        ({"deep": {"a": ["y" * 1001]}}, "properties.deep", "strings must be at most 1000"),
        ({"k" * 101: 1}, "properties", "names must be at most 100 characters"),
        ({"other": "1e999999999"}, None, None),  # a string: stored as text, fine
        ({"other": 10**20}, "properties.other", "numbers must be a finite decimal"),
        ({f"p{i}": "z" * 900 for i in range(10)}, "properties", "at most 8192 bytes as JSON"),
    ],
)
def test_event_properties_have_size_caps(
    setup: tuple[TestClient, Tenant, str],
    properties: dict[str, Any],
    field: str | None,
    message: str | None,
) -> None:
    client, tenant, customer = setup
    response = one(client, tenant, event(customer, "p1", n=1, **properties))
    if field is None:
        assert response.status_code == 202, response.text
        return
    body = assert_field(response, 422, "invalid_properties", field)
    assert message in body["errors"][0]["message"]


def test_a_ten_megabyte_property_is_never_stored(setup: tuple[TestClient, Tenant, str]) -> None:
    client, tenant, customer = setup
    big = event(customer, "big", n=1, blob="x" * 10_000_000)
    response = one(client, tenant, big)
    assert response.status_code == 413  # past the ordinary body limit, before parsing
    assert response.json()["code"] == "payload_too_large"
    # in a batch (a larger body limit) the event is rejected by its index
    assert [r[:2] for r in rejected(client, tenant, [event(customer, "ok", n=1), big])] == [
        (1, "invalid_properties")
    ]


def test_upcoming_invoice_after_a_huge_event_answers(client: TestClient, tenant: Tenant) -> None:
    meter(client, tenant, "gb", "sum", value_property="gb")
    plan = make_plan(
        client,
        tenant,
        charges=[{"meter": "gb", "model": "per_unit", "properties": {"unit_amount": "0.3"}}],
    )
    sub = make_subscription(client, tenant, plan=plan["id"])
    at = datetime.now(UTC) - timedelta(seconds=5)
    body = {
        "event_id": "huge",
        "customer": sub["customer"],
        "event_name": "gb",
        "timestamp": at.isoformat(),
        "properties": {"gb": "1e308"},
    }
    assert_field(one(client, tenant, body), 422, "invalid_value", "properties.gb")
    response = client.get(f"/v1/subscriptions/{sub['id']}/upcoming_invoice", headers=tenant.headers)
    assert response.status_code == 200, response.text


def test_readings_have_the_same_bounds(client: TestClient, tenant: Tenant) -> None:
    from tests.integration.test_readings import T0, make_meter_point, post

    point = make_meter_point(client, tenant)
    for value in ["1000000000000000", 10**15, "99999999999999999999999999999999999999"]:
        response = post(client, tenant, point["code"], T0 + timedelta(days=1), value)
        body = assert_field(response, 422, "validation_error", "reading")
        assert "below 10^15" in body["detail"]
    response = client.post(
        "/v1/meter_points",
        json={"code": "wide", "meter": "kwh", "register_digits": 16},
        headers=tenant.headers,
    )
    assert_field(response, 422, "validation_error", "register_digits")
