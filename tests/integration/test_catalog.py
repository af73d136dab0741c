from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from tests.conftest import Tenant, create, make_customer, make_plan, make_subscription


def _meter(client: TestClient, tenant: Tenant, name: str = "api_call", **body: object) -> dict:
    body = {"event_name": name, "name": name, "aggregation": "count", **body}
    return create(client, tenant, "/v1/meters", body)


def test_meters_by_id_or_event_name(client: TestClient, tenant: Tenant) -> None:
    meter = _meter(client, tenant, "kwh", aggregation="sum", value_property="kwh", unit="kWh")
    assert client.get("/v1/meters/kwh", headers=tenant.headers).json()["id"] == meter["id"]
    dup = client.post(
        "/v1/meters", json={"event_name": "kwh", "name": "x", "aggregation": "count"},
        headers=tenant.headers,
    )  # fmt: skip
    assert dup.status_code == 409 and dup.json()["code"] == "duplicate_code"
    missing = client.post(
        "/v1/meters", json={"event_name": "gb", "name": "x", "aggregation": "sum"},
        headers=tenant.headers,
    )  # fmt: skip
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["field"] == "value_property"
    unique = client.post(
        "/v1/meters", json={"event_name": "u", "name": "x", "aggregation": "unique_count"},
        headers=tenant.headers,
    )  # fmt: skip
    assert unique.json()["errors"][0]["field"] == "unique_property"


def test_plan_charges_are_validated_naming_the_property(client: TestClient, tenant: Tenant) -> None:
    _meter(client, tenant)
    bad_tiers = client.post(
        "/v1/plans",
        json={"code": "api", "name": "API", "currency": "eur", "interval": "month",
              "charges": [{"meter": "api_call", "model": "graduated", "properties": {"tiers": [
                  {"up_to": 100, "unit_amount": "0"}, {"up_to": 50, "unit_amount": "1"},
                  {"up_to": None, "unit_amount": "0.5"}]}}]},
        headers=tenant.headers,
    )  # fmt: skip
    assert bad_tiers.status_code == 422
    assert bad_tiers.json()["errors"][0]["field"] == "charges[0].properties.tiers[1].up_to"
    no_meter = client.post(
        "/v1/plans",
        json={"code": "api", "name": "API", "currency": "eur", "interval": "month",
              "charges": [{"meter": "nope", "model": "per_unit",
                           "properties": {"unit_amount": "1"}}]},
        headers=tenant.headers,
    )  # fmt: skip
    assert (
        no_meter.status_code == 422 and no_meter.json()["errors"][0]["field"] == "charges[0].meter"
    )
    floaty = client.post(
        "/v1/plans",
        json={"code": "api", "name": "API", "currency": "eur", "interval": "month",
              "charges": [{"meter": "api_call", "model": "per_unit",
                           "properties": {"unit_amount": 0.1}}]},
        headers=tenant.headers,
    )  # fmt: skip
    assert floaty.status_code == 422
    assert floaty.json()["errors"][0]["field"] == "charges[0].properties.unit_amount"


def test_plan_versions_and_migration(client: TestClient, tenant: Tenant) -> None:
    _meter(client, tenant)
    plan = make_plan(
        client, tenant, code="pro", amount=1000, entitlements={"seats": 5, "sso": False},
        charges=[{"meter": "api_call", "model": "package",
                  "properties": {"package_size": 1000, "package_amount": 200}}],
    )  # fmt: skip
    assert plan["version"] == 1 and plan["charges"][0]["event_name"] == "api_call"
    old_sub = make_subscription(client, tenant, plan="pro")
    v2 = client.patch("/v1/plans/pro", json={"amount": 1500, "entitlements": {"seats": 10}},
                      headers=tenant.headers)  # fmt: skip
    assert v2.status_code == 200
    assert (v2.json()["version"], v2.json()["amount"], v2.json()["charges"]) == (
        2,
        1500,
        plan["charges"],
    )
    assert client.get("/v1/plans/pro?version=1", headers=tenant.headers).json()["amount"] == 1000
    new_sub = make_subscription(client, tenant, plan="pro")
    assert (old_sub["plan_version"], new_sub["plan_version"]) == (1, 2)

    later = client.post("/v1/plans/pro/migrate",
                        json={"from_version": 1, "to_version": 2, "effective": "period_end"},
                        headers=tenant.headers)  # fmt: skip
    assert later.status_code == 200 and later.json()["subscriptions"] == 1
    pending = client.get(f"/v1/subscriptions/{old_sub['id']}", headers=tenant.headers).json()
    assert pending["plan_version"] == 1 and pending["pending_change"]["plan_version"] == 2
    now = client.post("/v1/plans/pro/migrate",
                      json={"from_version": 1, "to_version": 2, "effective": "now"},
                      headers=tenant.headers)  # fmt: skip
    assert now.json()["subscriptions"] == 1
    moved = client.get(f"/v1/subscriptions/{old_sub['id']}", headers=tenant.headers).json()
    assert moved["plan_version"] == 2
    missing = client.post("/v1/plans/pro/migrate", json={"from_version": 1, "to_version": 7},
                          headers=tenant.headers)  # fmt: skip
    assert missing.status_code == 404 and missing.json()["code"] == "plan_version_not_found"


def test_currency_and_interval_are_fixed_per_plan(client: TestClient, tenant: Tenant) -> None:
    make_plan(client, tenant, code="basic")
    response = client.patch("/v1/plans/basic", json={"currency": "usd"}, headers=tenant.headers)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "currency"


def test_coupons_validate_and_count_redemptions(client: TestClient, tenant: Tenant) -> None:
    bad = client.post(
        "/v1/coupons",
        json={"code": "X", "percent_off": "10", "amount_off": 500, "duration": "repeating"},
        headers=tenant.headers,
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"amount_off", "duration_in_periods"}
    no_currency = client.post(
        "/v1/coupons", json={"code": "Y", "amount_off": 5, "duration": "once"},
        headers=tenant.headers,
    )  # fmt: skip
    assert no_currency.json()["errors"][0]["field"] == "currency"

    create(client, tenant, "/v1/coupons", {"code": "ONE", "percent_off": "50",
                                           "duration": "once", "max_redemptions": 1})  # fmt: skip
    plan = make_plan(client, tenant)
    make_subscription(client, tenant, plan=plan["id"], coupon="ONE")
    used_up = client.post(
        "/v1/subscriptions",
        json={"customer": make_customer(client, tenant)["id"], "plan": plan["id"], "coupon": "ONE"},
        headers=tenant.headers,
    )
    assert used_up.status_code == 409 and used_up.json()["code"] == "coupon_not_redeemable"
    coupon = client.get("/v1/coupons/ONE", headers=tenant.headers).json()
    assert coupon["times_redeemed"] == 1 and coupon["valid"] is False

    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    create(client, tenant, "/v1/coupons", {"code": "OLD", "percent_off": "5",
                                           "duration": "forever", "redeem_by": past})  # fmt: skip
    expired = client.post(
        "/v1/subscriptions",
        json={"customer": make_customer(client, tenant)["id"], "plan": plan["id"], "coupon": "OLD"},
        headers=tenant.headers,
    )
    assert expired.status_code == 409
    create(client, tenant, "/v1/coupons", {"code": "USD5", "amount_off": 500, "currency": "usd",
                                           "duration": "once"})  # fmt: skip
    wrong = client.post(
        "/v1/subscriptions",
        json={
            "customer": make_customer(client, tenant)["id"],
            "plan": plan["id"],
            "coupon": "USD5",
        },
        headers=tenant.headers,
    )
    assert wrong.status_code == 409 and "usd" in wrong.json()["detail"]
