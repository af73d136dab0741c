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
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.conftest import Tenant, add_member, api_key


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


def _revoke_key(client: TestClient, victim: Tenant) -> Probe:
    key = api_key(client, victim)

    def unchanged() -> None:
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {key['key']}"})
        assert me.status_code == 200 and me.json()["org"]["id"] == victim.org_id

    return Probe("DELETE", f"/v1/api_keys/{key['id']}", unchanged=unchanged)


CASES: dict[tuple[str, str], ProbeFactory] = {
    ("GET", "/v1/members/{user_id}"): _member_probe("GET"),
    ("PATCH", "/v1/members/{user_id}"): _member_probe("PATCH", {"role": "viewer"}),
    ("DELETE", "/v1/members/{user_id}"): _member_probe("DELETE"),
    ("DELETE", "/v1/api_keys/{key_id}"): _revoke_key,
}


def routes_with_ids(client: TestClient) -> set[tuple[str, str]]:
    found = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and "{" in route.path:
            found |= {(method, route.path) for method in route.methods}
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
