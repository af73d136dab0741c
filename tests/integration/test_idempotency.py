from __future__ import annotations

import threading
import uuid

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from kassa.runtime import Runtime
from tests.conftest import Tenant


def _keys(client: TestClient, tenant: Tenant) -> list[str]:
    return [k["name"] for k in client.get("/v1/api_keys", headers=tenant.headers).json()["data"]]


def _post(client: TestClient, tenant: Tenant, key: str, name: str = "ci"):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/api_keys", json={"name": name}, headers={**tenant.headers, "Idempotency-Key": key}
    )


def test_replay_returns_the_first_response(client: TestClient, tenant: Tenant) -> None:
    first = _post(client, tenant, "key-1")
    second = _post(client, tenant, "key-1")
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.json() == first.json()  # the same secret, shown once, replayed exactly
    assert second.headers["content-type"] == "application/json"
    assert _keys(client, tenant) == ["ci"]


def test_same_key_different_body_is_422(client: TestClient, tenant: Tenant) -> None:
    assert _post(client, tenant, "key-2", "a").status_code == 201
    reused = _post(client, tenant, "key-2", "b")
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert _keys(client, tenant) == ["a"]


def test_keys_are_scoped_per_org(client: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    assert _post(client, tenant, "shared").status_code == 201
    other = _post(client, other_tenant, "shared")
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert _keys(client, other_tenant) == ["ci"]


def test_in_flight_duplicate_is_409(client: TestClient, tenant: Tenant, rt: Runtime) -> None:
    owner = make_url(rt.db.urls.owner).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(owner, autocommit=True) as conn:
        # what the first request's transaction holds while it runs
        conn.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))", (f"idem:{tenant.org_id}:k3",)
        )
        busy = _post(client, tenant, "k3")
        assert busy.status_code == 409
        assert busy.json()["code"] == "idempotency_key_in_use"
        conn.execute("SELECT pg_advisory_unlock_all()")
    assert _post(client, tenant, "k3").status_code == 201
    assert _keys(client, tenant) == ["ci"]


def test_concurrent_duplicates_create_exactly_one(client: TestClient, tenant: Tenant) -> None:
    for round_ in range(8):
        key = f"race-{round_}-{uuid.uuid4().hex}"
        barrier = threading.Barrier(2)
        statuses: list[tuple[int, bool]] = []

        def fire(
            k: str = key, b: threading.Barrier = barrier, n: int = round_, out: list = statuses
        ) -> None:
            b.wait()
            r = _post(client, tenant, k, f"race-{n}")
            out.append((r.status_code, r.headers.get("Idempotent-Replayed") == "true"))

        threads = [threading.Thread(target=fire) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) in ([(201, False), (201, True)], [(201, False), (409, False)]), (
            statuses
        )
    names = _keys(client, tenant)
    assert sorted(names) == sorted(f"race-{i}" for i in range(8))


def test_failed_requests_are_not_stored(client: TestClient, tenant: Tenant) -> None:
    bad = client.post(
        "/v1/api_keys", json={"name": ""}, headers={**tenant.headers, "Idempotency-Key": "k4"}
    )
    assert bad.status_code == 422
    assert _post(client, tenant, "k4").status_code == 201


def test_key_longer_than_255_is_rejected(client: TestClient, tenant: Tenant) -> None:
    response = _post(client, tenant, "x" * 256)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert _keys(client, tenant) == []
