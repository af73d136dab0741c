"""Late and corrected usage: periods close after the meter's lateness; late events are
rejected (period_closed) or, when the org allows it, billed as a difference that names them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from kassa.runtime import Runtime
from tests.conftest import Tenant, create, make_customer, make_plan, make_subscription

BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int) -> str:
    return datetime(*args, tzinfo=BERLIN).isoformat()  # type: ignore[misc]


def setup(client: TestClient, tenant: Tenant) -> tuple[str, dict[str, Any]]:
    clock = create(client, tenant, "/v1/test_clocks", {"frozen_time": at(2026, 1, 1)})
    customer = make_customer(client, tenant, timezone="Europe/Berlin", test_clock=clock["id"])
    create(
        client,
        tenant,
        "/v1/meters",
        {
            "event_name": "calls",
            "name": "API calls",
            "aggregation": "count",
            "lateness_seconds": 3600,
        },
    )
    plan = make_plan(
        client,
        tenant,
        amount=0,
        pay_in_advance=False,
        charges=[{"meter": "calls", "model": "per_unit", "properties": {"unit_amount": "100"}}],
    )
    sub = make_subscription(client, tenant, customer=customer["id"], plan=plan["id"])
    return clock["id"], sub


def send(client: TestClient, tenant: Tenant, sub: dict[str, Any], event_id: str, ts: str) -> Any:
    return client.post(
        "/v1/events",
        headers=tenant.headers,
        json={
            "event_id": event_id,
            "customer": sub["customer"],
            "event_name": "calls",
            "timestamp": ts,
        },
    )


def advance(client: TestClient, tenant: Tenant, clock: str, to: str) -> None:
    r = client.post(
        f"/v1/test_clocks/{clock}/advance", json={"frozen_time": to}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text


def lines(client: TestClient, tenant: Tenant, sub: dict[str, Any]) -> list[tuple[str, int, Any]]:
    invoice = client.get(
        f"/v1/subscriptions/{sub['id']}/upcoming_invoice", headers=tenant.headers
    ).json()
    return [(x["kind"], x["amount"], x.get("event_ids")) for x in invoice["lines"]]


def test_late_event_within_the_lateness_window_counts_normally(
    client: TestClient, tenant: Tenant
) -> None:
    clock, sub = setup(client, tenant)
    advance(client, tenant, clock, at(2026, 2, 1, 0, 30))  # January closes at 01:00
    assert send(client, tenant, sub, "jan-31", at(2026, 1, 31, 23)).status_code == 202
    assert lines(client, tenant, sub) == [("usage", 0, None)]  # February: nothing yet


def test_late_event_for_a_closed_period_is_rejected_by_default(
    client: TestClient, tenant: Tenant
) -> None:
    clock, sub = setup(client, tenant)
    advance(client, tenant, clock, at(2026, 2, 10))
    late = send(client, tenant, sub, "jan-15", at(2026, 1, 15))
    assert late.status_code == 422
    assert late.json()["code"] == "period_closed"
    assert late.json()["errors"][0]["field"] == "timestamp"
    batch = client.post(
        "/v1/events/batch",
        headers=tenant.headers,
        json={
            "events": [
                {
                    "event_id": "feb-2",
                    "customer": sub["customer"],
                    "event_name": "calls",
                    "timestamp": at(2026, 2, 2),
                },
                {
                    "event_id": "jan-16",
                    "customer": sub["customer"],
                    "event_name": "calls",
                    "timestamp": at(2026, 1, 16),
                },
            ]
        },
    ).json()
    assert batch["accepted"] == 1
    assert [(r["index"], r["code"]) for r in batch["rejected"]] == [(1, "period_closed")]


def test_late_usage_is_billed_as_a_difference_naming_its_events(
    client: TestClient, tenant: Tenant
) -> None:
    clock, sub = setup(client, tenant)
    client.patch("/v1/org", json={"late_usage": "adjust"}, headers=tenant.headers)
    assert send(client, tenant, sub, "jan-1", at(2026, 1, 5)).status_code == 202
    advance(client, tenant, clock, at(2026, 2, 10))
    assert send(client, tenant, sub, "jan-15", at(2026, 1, 15)).status_code == 202
    assert send(client, tenant, sub, "jan-15", at(2026, 1, 15)).json()["duplicates"] == 1
    assert lines(client, tenant, sub) == [("usage", 0, None), ("usage", 100, ["jan-15"])]
    voided = client.post(
        "/v1/events/jan-1/void", json={"reason": "test traffic"}, headers=tenant.headers
    )
    assert voided.status_code == 200
    assert lines(client, tenant, sub) == [
        ("usage", 0, None),
        ("usage", 100, ["jan-15"]),
        ("usage", -100, ["jan-1"]),
    ]


def test_an_unusual_period_is_flagged_once(client: TestClient, tenant: Tenant, rt: Runtime) -> None:
    from sqlalchemy import select

    from kassa.events.models import DomainEvent

    clock = create(client, tenant, "/v1/test_clocks", {"frozen_time": at(2026, 1, 1)})
    customer = make_customer(client, tenant, timezone="Europe/Berlin", test_clock=clock["id"])
    create(
        client,
        tenant,
        "/v1/meters",
        {
            "event_name": "kwh",
            "name": "Electricity",
            "aggregation": "sum",
            "value_property": "kwh",
            "anomaly_multiplier": "3",
            "anomaly_min_periods": 3,
        },
    )
    plan = make_plan(
        client,
        tenant,
        amount=0,
        charges=[{"meter": "kwh", "model": "per_unit", "properties": {"unit_amount": "30"}}],
    )
    make_subscription(client, tenant, customer=customer["id"], plan=plan["id"])

    def use(event_id: str, when: str, kwh: int) -> None:
        r = client.post(
            "/v1/events",
            headers=tenant.headers,
            json={
                "event_id": event_id,
                "customer": customer["id"],
                "event_name": "kwh",
                "timestamp": when,
                "properties": {"kwh": kwh},
            },
        )
        assert r.status_code == 202, r.text

    for month, kwh in ((1, 100), (2, 120), (3, 90)):
        use(f"m{month}", at(2026, month, 10), kwh)
        advance(client, tenant, clock["id"], at(2026, month + 1, 1, 2))
    use("m4a", at(2026, 4, 5), 200)
    calm = client.get(f"/v1/customers/{customer['id']}/usage?meter=kwh", headers=tenant.headers)
    assert calm.json()["anomaly"] == {
        "flagged": False,
        "median": "100",
        "multiplier": "3",
        "periods": 3,
    }
    use("m4b", at(2026, 4, 6), 150)  # 350 > 3 × 100
    use("m4c", at(2026, 4, 7), 10)
    flagged = client.get(f"/v1/customers/{customer['id']}/usage?meter=kwh", headers=tenant.headers)
    assert flagged.json()["value"] == "360" and flagged.json()["anomaly"]["flagged"] is True
    with rt.db.transaction(tenant.org_id) as session:
        kinds = session.scalars(
            select(DomainEvent.type).where(
                DomainEvent.org_id == tenant.org_id, DomainEvent.type == "usage.anomaly_detected"
            )
        ).all()
    assert kinds == ["usage.anomaly_detected"]


def test_late_usage_that_cannot_be_billed_is_refused_not_a_crash(
    client: TestClient, tenant: Tenant
) -> None:
    """Re-rating a closed period for a late event whose amount overflows what an invoice
    holds (10**8 kWh at 10**12 minor units each) answers 409 and stores nothing."""
    clock = create(client, tenant, "/v1/test_clocks", {"frozen_time": at(2026, 1, 1)})
    customer = make_customer(client, tenant, timezone="Europe/Berlin", test_clock=clock["id"])
    meter = {"event_name": "kwh", "name": "kWh", "aggregation": "sum", "value_property": "n"}
    create(client, tenant, "/v1/meters", meter | {"lateness_seconds": 3600})
    price = {"unit_amount": "1000000000000"}
    charge = {"meter": "kwh", "model": "per_unit", "properties": price}
    plan = make_plan(client, tenant, amount=0, pay_in_advance=False, charges=[charge])
    make_subscription(client, tenant, customer=customer["id"], plan=plan["id"])
    client.patch("/v1/org", json={"late_usage": "adjust"}, headers=tenant.headers)
    advance(client, tenant, clock["id"], at(2026, 2, 10))
    event = {"event_id": "huge", "customer": customer["id"], "event_name": "kwh"}
    event |= {"timestamp": at(2026, 1, 15), "properties": {"n": 100_000_000}}
    refused = client.post("/v1/events", json=event, headers=tenant.headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "amount_out_of_range"
    stored = client.get("/v1/events", params={"customer": customer["id"]}, headers=tenant.headers)
    assert stored.json()["data"] == []
