"""Another organization's id → 404, for every route that takes an id.

``CASES`` maps each (method, path template) to a probe that creates the object in the
victim org and returns the request the attacker makes. A new route with a path parameter
and no entry here fails ``test_every_route_with_an_id_has_a_cross_org_case``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import (
    Tenant,
    add_member,
    api_key,
    create,
    make_customer,
    make_plan,
    make_subscription,
    unique_email,
)
from tests.integration.test_readings import make_meter_point, make_meter_reading


@dataclass(frozen=True)
class Probe:
    method: str
    url: str
    body: dict[str, Any] | None = None
    # asserts, as the victim, that the attacker's request changed nothing
    unchanged: Callable[[], None] = lambda: None


ProbeFactory = Callable[[TestClient, Tenant], Probe]


def _member_probe(method: str, body: dict[str, Any] | None = None) -> ProbeFactory:
    def make(client: TestClient, victim: Tenant) -> Probe:
        member = add_member(client, victim, "staff")
        url = f"/v1/members/{member.user_id}"

        def unchanged() -> None:
            check = client.get(url, headers=victim.headers)
            assert check.status_code == 200 and check.json()["role"] == "staff"

        return Probe(method, url, body, unchanged)

    return make


def _invitation_probe(method: str, suffix: str = "") -> ProbeFactory:
    def make(client: TestClient, victim: Tenant) -> Probe:
        invited = create(
            client, victim, "/v1/invitations", {"email": unique_email("invitee"), "role": "staff"}
        )
        url = f"/v1/invitations/{invited['id']}"

        def unchanged() -> None:
            check = client.get(url, headers=victim.headers)
            assert check.status_code == 200
            assert check.json()["status"] == "pending"
            assert check.json()["sent_at"] == invited["sent_at"]

        return Probe(method, url + suffix, None, unchanged)

    return make


def _revoke_key(client: TestClient, victim: Tenant) -> Probe:
    key = api_key(client, victim)

    def unchanged() -> None:
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {key['key']}"})
        assert me.status_code == 200 and me.json()["org"]["id"] == victim.org_id

    return Probe("DELETE", f"/v1/api_keys/{key['id']}", unchanged=unchanged)


def _object_probe(
    make: Callable[[TestClient, Tenant], dict[str, Any]],
    method: str,
    template: str,
    body: dict[str, Any] | None = None,
    check: str | None = None,
) -> ProbeFactory:
    """Create an object in the victim org; probe ``template`` (``{id}`` filled in); then
    check as the victim that ``check`` (default: the object's own GET) is unchanged."""

    def factory(client: TestClient, victim: Tenant) -> Probe:
        obj = make(client, victim)
        url = template.format(id=obj["id"])
        check_url = (check or template.split("/{id}")[0] + "/{id}").format(id=obj["id"])
        before = client.get(check_url, headers=victim.headers).json()

        def unchanged() -> None:
            after = client.get(check_url, headers=victim.headers)
            assert after.status_code == 200 and after.json() == before

        return Probe(method, url, body, unchanged)

    return factory


def _meter(client: TestClient, victim: Tenant) -> dict[str, Any]:
    return create(client, victim, "/v1/meters",
                  {"event_name": "calls", "name": "Calls", "aggregation": "count"})  # fmt: skip


def _coupon(client: TestClient, victim: Tenant) -> dict[str, Any]:
    return create(client, victim, "/v1/coupons",
                  {"code": "SAVE", "percent_off": "10", "duration": "forever"})  # fmt: skip


def _clock(client: TestClient, victim: Tenant) -> dict[str, Any]:
    return create(client, victim, "/v1/test_clocks", {"frozen_time": "2026-01-01T00:00:00Z"})


def _invoice(finalized: bool) -> Callable[[TestClient, Tenant], dict[str, Any]]:
    def make(client: TestClient, victim: Tenant) -> dict[str, Any]:
        body = {"customer": make_customer(client, victim)["id"], "auto_finalize": finalized,
                "lines": [{"description": "Secret work", "unit_amount": 5000}]}  # fmt: skip
        return create(client, victim, "/v1/invoices", body)

    return make


def _credit_note(client: TestClient, victim: Tenant) -> dict[str, Any]:
    invoice = _invoice(True)(client, victim)
    return create(client, victim, "/v1/credit_notes", {"invoice": invoice["id"], "amount": 100})


CUS = "/v1/customers/{id}"
INV = "/v1/invoices/{id}"
SUB = "/v1/subscriptions/{id}"
PLAN = "/v1/plans/{id}"
CLOCK = "/v1/test_clocks/{id}"


def _void_probe(client: TestClient, victim: Tenant) -> Probe:
    create(
        client, victim, "/v1/meters", {"event_name": "hits", "name": "Hits", "aggregation": "count"}
    )
    cust = make_customer(client, victim)
    event = {"event_id": "secret-1", "customer": cust["id"], "event_name": "hits",
             "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    assert client.post("/v1/events", json=event, headers=victim.headers).status_code == 202

    def unchanged() -> None:
        listed = client.get("/v1/events", headers=victim.headers).json()["data"]
        assert [e["voided_at"] for e in listed] == [None]

    return Probe("POST", "/v1/events/secret-1/void", {"reason": "x"}, unchanged)


CASES: dict[tuple[str, str], ProbeFactory] = {
    ("POST", "/v1/events/{event_id}/void"): _void_probe,
    ("GET", "/v1/customers/{customer}/usage"): _object_probe(
        make_customer,
        "GET",
        CUS + "/usage?meter=hits&from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
        check=CUS,
    ),
    ("GET", "/v1/customers/{customer}"): _object_probe(make_customer, "GET", CUS),
    ("PATCH", "/v1/customers/{customer}"): _object_probe(
        make_customer, "PATCH", CUS, {"name": "x"}
    ),
    ("DELETE", "/v1/customers/{customer}"): _object_probe(make_customer, "DELETE", CUS),
    ("POST", "/v1/customers/{customer}/restore"): _object_probe(
        make_customer, "POST", CUS + "/restore"
    ),
    ("GET", "/v1/customers/{customer}/export"): _object_probe(
        make_customer, "GET", CUS + "/export"
    ),
    ("POST", "/v1/customers/{customer}/anonymize"): _object_probe(
        make_customer, "POST", CUS + "/anonymize"
    ),
    ("GET", "/v1/meters/{meter}"): _object_probe(_meter, "GET", "/v1/meters/{id}"),
    ("GET", "/v1/plans/{plan}"): _object_probe(make_plan, "GET", PLAN),
    ("PATCH", "/v1/plans/{plan}"): _object_probe(make_plan, "PATCH", PLAN, {"amount": 1}),
    ("POST", "/v1/plans/{plan}/migrate"): _object_probe(
        make_plan, "POST", PLAN + "/migrate", {"from_version": 1, "to_version": 1}
    ),
    ("GET", "/v1/coupons/{coupon}"): _object_probe(_coupon, "GET", "/v1/coupons/{id}"),
    ("GET", "/v1/subscriptions/{sub_id}"): _object_probe(make_subscription, "GET", SUB),
    ("PATCH", "/v1/subscriptions/{sub_id}"): _object_probe(
        make_subscription, "PATCH", SUB, {"metadata": {"a": "b"}}
    ),
    ("POST", "/v1/subscriptions/{sub_id}/change"): _object_probe(
        make_subscription, "POST", SUB + "/change", {"quantity": 3}
    ),
    ("POST", "/v1/subscriptions/{sub_id}/cancel"): _object_probe(
        make_subscription, "POST", SUB + "/cancel", {"at_period_end": False}
    ),
    ("POST", "/v1/subscriptions/{sub_id}/pause"): _object_probe(
        make_subscription, "POST", SUB + "/pause"
    ),
    ("POST", "/v1/subscriptions/{sub_id}/resume"): _object_probe(
        make_subscription, "POST", SUB + "/resume"
    ),
    ("GET", "/v1/subscriptions/{sub_id}/upcoming_invoice"): _object_probe(
        make_subscription, "GET", SUB + "/upcoming_invoice"
    ),
    ("GET", "/v1/test_clocks/{clock_id}"): _object_probe(_clock, "GET", CLOCK),
    ("POST", "/v1/test_clocks/{clock_id}/advance"): _object_probe(
        _clock, "POST", CLOCK + "/advance", {"frozen_time": "2027-01-01T00:00:00Z"}
    ),
    ("GET", "/v1/members/{user_id}"): _member_probe("GET"),
    ("PATCH", "/v1/members/{user_id}"): _member_probe("PATCH", {"role": "viewer"}),
    ("DELETE", "/v1/members/{user_id}"): _member_probe("DELETE"),
    ("DELETE", "/v1/api_keys/{key_id}"): _revoke_key,
    ("GET", "/v1/invitations/{invitation_id}"): _invitation_probe("GET"),
    ("DELETE", "/v1/invitations/{invitation_id}"): _invitation_probe("DELETE"),
    ("POST", "/v1/invitations/{invitation_id}/resend"): _invitation_probe("POST", "/resend"),
    ("GET", "/v1/meter_points/{meter_point}"): _object_probe(
        make_meter_point, "GET", "/v1/meter_points/{id}"
    ),
    ("GET", "/v1/meter_readings/{reading_id}"): _object_probe(
        make_meter_reading, "GET", "/v1/meter_readings/{id}"
    ),
    ("GET", "/v1/invoices/{invoice_id}"): _object_probe(_invoice(True), "GET", INV),
    ("GET", "/v1/invoices/{invoice_id}/pdf"): _object_probe(_invoice(True), "GET", INV + "/pdf"),
    ("GET", "/v1/invoices/{invoice_id}/ubl"): _object_probe(_invoice(True), "GET", INV + "/ubl"),
    ("POST", "/v1/invoices/{invoice_id}/finalize"): _object_probe(
        _invoice(False), "POST", INV + "/finalize"
    ),
    ("POST", "/v1/invoices/{invoice_id}/void"): _object_probe(
        _invoice(True), "POST", INV + "/void"
    ),
    ("POST", "/v1/invoices/{invoice_id}/mark_uncollectible"): _object_probe(
        _invoice(True), "POST", INV + "/mark_uncollectible"
    ),
    ("POST", "/v1/invoices/{invoice_id}/pay"): _object_probe(
        _invoice(True), "POST", INV + "/pay", {}
    ),
    ("GET", "/v1/credit_notes/{note_id}"): _object_probe(
        _credit_note, "GET", "/v1/credit_notes/{id}"
    ),
    ("GET", "/v1/credit_notes/{note_id}/pdf"): _object_probe(
        _credit_note, "GET", "/v1/credit_notes/{id}/pdf", check="/v1/credit_notes/{id}"
    ),
    ("GET", "/v1/credit_notes/{note_id}/ubl"): _object_probe(
        _credit_note, "GET", "/v1/credit_notes/{id}/ubl", check="/v1/credit_notes/{id}"
    ),
    ("GET", "/v1/customers/{customer_id}/balance"): _object_probe(
        make_customer, "GET", CUS + "/balance"
    ),
    ("GET", "/v1/customers/{customer_id}/statement"): _object_probe(
        make_customer, "GET", CUS + "/statement?from=2026-01-01&to=2026-12-31"
    ),
}


def routes_with_ids(client: TestClient) -> set[tuple[str, str]]:
    # From the OpenAPI document: FastAPI's included routers are not flat ``APIRoute``s in
    # ``app.routes`` any more, so walking those found nothing.
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    found = {(m.upper(), path) for path, ops in paths.items() if "{" in path for m in ops}
    assert found
    return found


def test_every_route_with_an_id_has_a_cross_org_case(client: TestClient) -> None:
    missing = routes_with_ids(client) - set(CASES)
    assert not missing, f"routes without a cross-org test: {sorted(missing)}"


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_other_orgs_id_is_404(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, route: tuple[str, str]
) -> None:
    probe = CASES[route](client, other_tenant)
    response = client.request(probe.method, probe.url, json=probe.body, headers=tenant.headers)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    probe.unchanged()


def test_lists_show_only_the_callers_org(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = api_key(client, tenant, "mine")
    api_key(client, other_tenant, "theirs")
    add_member(client, other_tenant, "viewer")
    keys = client.get("/v1/api_keys", headers=tenant.headers).json()["data"]
    assert [k["id"] for k in keys] == [mine["id"]]
    members = client.get("/v1/members", headers=tenant.headers).json()["data"]
    assert [m["id"] for m in members] == [tenant.user_id]
    me = client.get("/v1/org", headers=tenant.headers).json()
    assert me["id"] == tenant.org_id
