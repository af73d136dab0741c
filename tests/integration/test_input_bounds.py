"""Inputs that once answered 500 answer a 4xx problem naming the field, or work (issue 13 §3).

Each test is one reproduction from the probe; the bounds are the ones documented in
``docs/api-robustness.md``."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Tenant, make_customer, make_plan

INT4_MAX = 2**31 - 1


def problem_fields(response: Any) -> list[str]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return [e["field"] for e in response.json().get("errors", [])]


@pytest.mark.parametrize("fmt", ["json", "pdf"])
def test_a_statement_in_an_unknown_currency_is_refused(
    client: TestClient, tenant: Tenant, fmt: str
) -> None:
    customer = make_customer(client, tenant)
    response = client.get(
        f"/v1/customers/{customer['id']}/statement",
        params={"from": "2026-01-01", "to": "2026-01-31", "currency": "000", "format": fmt},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["currency"]


def test_a_statement_over_the_whole_calendar_works(client: TestClient, tenant: Tenant) -> None:
    customer = make_customer(client, tenant, timezone="Pacific/Kiritimati")
    for fmt in ("json", "pdf"):
        response = client.get(
            f"/v1/customers/{customer['id']}/statement",
            params={"from": "0001-01-01", "to": "9999-12-31", "format": fmt},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"


def test_a_plan_version_beyond_int4_is_not_found(client: TestClient, tenant: Tenant) -> None:
    plan = make_plan(client, tenant)
    response = client.get(
        f"/v1/plans/{plan['code']}", params={"version": 3588257181217}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["version"]
    response = client.get(
        f"/v1/plans/{plan['code']}", params={"version": INT4_MAX}, headers=tenant.headers
    )
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("field", ["from_version", "to_version"])
def test_a_plan_migration_version_beyond_int4_is_refused(
    client: TestClient, tenant: Tenant, field: str
) -> None:
    plan = make_plan(client, tenant)
    body = {"from_version": 1, "to_version": 1, "effective": "now", field: 2432902008176639999}
    response = client.post(f"/v1/plans/{plan['code']}/migrate", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert problem_fields(response) == [field]


def test_a_plan_amount_at_the_schema_maximum_is_stored(client: TestClient, tenant: Tenant) -> None:
    plan = make_plan(client, tenant, amount=1_000_000_000_000)
    assert plan["amount"] == 1_000_000_000_000
    patched = client.patch(
        f"/v1/plans/{plan['code']}", json={"amount": 1_000_000_000_000 - 1}, headers=tenant.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["amount"] == 1_000_000_000_000 - 1
    fetched = client.get(f"/v1/plans/{plan['code']}", headers=tenant.headers)
    assert fetched.json()["amount"] == 1_000_000_000_000 - 1


def test_a_plan_amount_above_the_maximum_is_refused(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/v1/plans",
        json={"code": "big", "name": "Big", "currency": "eur", "interval": "month",
              "amount": 1_000_000_000_001},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["amount"]


def test_a_coupon_amount_at_the_maximum_is_stored(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/v1/coupons",
        json={"code": "huge", "amount_off": 1_000_000_000_000, "currency": "eur",
              "duration": "once"},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["amount_off"] == 1_000_000_000_000


@pytest.mark.parametrize("value", [1180591620717411303424, INT4_MAX + 1])
def test_coupon_max_redemptions_beyond_int4_is_refused(
    client: TestClient, tenant: Tenant, value: int
) -> None:
    response = client.post(
        "/v1/coupons",
        json={"code": "many", "percent_off": "10", "duration": "once", "max_redemptions": value},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["max_redemptions"]


# --- exact decimals: a decimal string or a JSON integer, never a float ---------------------


def test_a_percent_off_integer_is_accepted_like_a_decimal_string(
    client: TestClient, tenant: Tenant
) -> None:
    response = client.post(
        "/v1/coupons",
        json={"code": "FIFTEEN", "percent_off": 15, "duration": "once"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["percent_off"] == "15"


def test_a_percent_off_float_is_refused_with_only_its_own_error(
    client: TestClient, tenant: Tenant
) -> None:
    response = client.post(
        "/v1/coupons",
        json={"code": "FLOAT", "percent_off": 15.5, "duration": "once"},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["percent_off"]
    assert "not a float" in response.json()["errors"][0]["message"]


def test_an_invalid_duration_reports_no_false_error_about_periods(
    client: TestClient, tenant: Tenant
) -> None:
    response = client.post(
        "/v1/coupons",
        json={"code": "DUR", "percent_off": "5", "duration": "sometimes"},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["duration"]


def test_an_anomaly_multiplier_integer_is_accepted(client: TestClient, tenant: Tenant) -> None:
    response = client.post(
        "/v1/meters",
        json={"event_name": "calls", "name": "Calls", "aggregation": "count",
              "anomaly_multiplier": 3},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["anomaly_multiplier"] == "3"
    floated = client.post(
        "/v1/meters",
        json={"event_name": "calls2", "name": "Calls", "aggregation": "count",
              "anomaly_multiplier": 3.5},
        headers=tenant.headers,
    )  # fmt: skip
    assert floated.status_code == 422, floated.text
    assert problem_fields(floated) == ["anomaly_multiplier"]


def test_a_one_off_line_quantity_is_exact(client: TestClient, tenant: Tenant) -> None:
    customer = make_customer(client, tenant)
    for quantity, status in (("2.5", 201), (3, 201), (2.5, 422)):
        response = client.post(
            "/v1/invoices",
            json={"customer": customer["id"],
                  "lines": [{"description": "Cleaning", "quantity": quantity,
                             "unit_amount": 1000}]},
            headers=tenant.headers,
        )  # fmt: skip
        assert response.status_code == status, response.text
    assert problem_fields(response) == ["lines[0].quantity"]


def test_a_one_off_line_beyond_the_money_bound_is_refused(
    client: TestClient, tenant: Tenant
) -> None:
    customer = make_customer(client, tenant)
    response = client.post(
        "/v1/invoices",
        json={"customer": customer["id"],
              "lines": [{"description": "Too much", "quantity": "999999999999",
                         "unit_amount": 1_000_000_000_000}]},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["lines[0]"]


def test_a_coupon_redeem_by_before_year_one_in_utc_is_refused(
    client: TestClient, tenant: Tenant
) -> None:
    """Found by the fuzzer (as a test clock's ``frozen_time``): 0001-01-01T00:00+06:00 is 1 BC
    in UTC; PostgreSQL stored it and every later read of the row answered 500."""
    response = client.post(
        "/v1/coupons",
        json={"code": "ANCIENT", "percent_off": "5", "duration": "once",
              "redeem_by": "0001-01-01T00:00:00+06:00"},
        headers=tenant.headers,
    )  # fmt: skip
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["redeem_by"]
    listed = client.get("/v1/coupons", headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    earliest = client.post(
        "/v1/coupons",
        json={"code": "EARLY", "percent_off": "5", "duration": "once",
              "redeem_by": "0001-01-01T00:00:00Z"},
        headers=tenant.headers,
    )  # fmt: skip
    assert earliest.status_code == 201, earliest.text
    assert client.get("/v1/coupons", headers=tenant.headers).status_code == 200


@pytest.mark.parametrize("locale", ["zz", "en_XX", "qq-XX"])
def test_a_locale_babel_does_not_know_is_refused(
    client: TestClient, tenant: Tenant, locale: str
) -> None:
    """Found probing the merged code: ``zz`` fits the locale pattern and was stored, then
    every PDF of the customer (invoice, statement) answered 500 (babel's UnknownLocaleError)."""
    response = client.post(
        "/v1/customers", json={"name": "Renter", "locale": locale}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["locale"]
    customer = make_customer(client, tenant, locale="de-AT")
    response = client.patch(
        f"/v1/customers/{customer['id']}", json={"locale": locale}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response) == ["locale"]


def test_a_statement_pdf_in_a_hyphenated_locale_works(client: TestClient, tenant: Tenant) -> None:
    """Found probing the merged code: the pattern admits ``de-AT``; the invoice PDF turned
    it into babel's ``de_AT`` but the statement PDF did not (500)."""
    customer = make_customer(client, tenant, locale="de-AT")
    response = client.get(
        f"/v1/customers/{customer['id']}/statement",
        params={"from": "2026-01-01", "to": "2026-01-31", "format": "pdf"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
