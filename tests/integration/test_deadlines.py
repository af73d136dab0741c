"""Every transaction has a deadline (issue 13, section 2): a request that waits too long for a
lock answers 503, one whose statement runs too long 504, and one that finds no free
connection 503 — problem+json with a stable code, quickly, never a hung request or a 500.
The slow part is real: a test transaction holds the customer's row lock while the API
tries to update that customer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import make_url, text

from kassa.app import create_app
from kassa.runtime import Runtime
from tests.conftest import Tenant, make_customer, make_settings, signup


@contextmanager
def app_with(database_url: str, tmp_path: Path, **settings: Any) -> Iterator[TestClient]:
    """The app on its own runtime with these settings (the database: migrated by ``rt``)."""
    rt = Runtime.build(make_settings(tmp_path, database_url, **settings))
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            yield client
    finally:
        rt.close()


@contextmanager
def row_locked(database_url: str, org_id: str, customer_id: str) -> Iterator[None]:
    """Another transaction holds the customer's row lock (as a long operation would)."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('app.org_id', %s, true)", (org_id,))
        conn.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (customer_id,))
        yield
        conn.rollback()


def refusals(code: str) -> float:
    value = REGISTRY.get_sample_value("kassa_limit_refusals_total", {"code": code})
    return value or 0.0


def patch(client: TestClient, tenant: Tenant, customer: str) -> Any:
    return client.patch(f"/v1/customers/{customer}", json={"name": "X"}, headers=tenant.headers)


def within(seconds: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()``'s result and duration; fails (without hanging) if it takes longer."""
    box: list[Any] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"no answer within {seconds} s"
    return box[0], time.monotonic() - started


def test_a_lock_wait_past_lock_timeout_answers_503(
    rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    with app_with(database_url, tmp_path, request_lock_timeout_ms=300) as client:
        tenant = signup(client)
        customer = make_customer(client, tenant)["id"]
        before = refusals("lock_timeout")
        with row_locked(database_url, tenant.org_id, customer):
            response, elapsed = within(3, lambda: patch(client, tenant, customer))
        assert response.status_code == 503, response.text
        assert refusals("lock_timeout") == before + 1
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "lock_timeout"
        assert response.headers["retry-after"] == "1"
        assert elapsed < 2
        assert patch(client, tenant, customer).status_code == 200  # the lock is gone


def test_a_statement_past_statement_timeout_answers_504(
    rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    settings = {"request_statement_timeout_ms": 300, "request_lock_timeout_ms": 60_000}
    with app_with(database_url, tmp_path, **settings) as client:
        tenant = signup(client)
        customer = make_customer(client, tenant)["id"]
        with row_locked(database_url, tenant.org_id, customer):
            response, elapsed = within(3, lambda: patch(client, tenant, customer))
        assert response.status_code == 504, response.text
        assert response.json()["code"] == "statement_timeout"
        assert elapsed < 2
        assert client.get(f"/v1/customers/{customer}", headers=tenant.headers).json()["name"] != "X"


def test_no_free_connection_answers_503_quickly(
    rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    settings = {
        "db_pool_size": 1,
        "request_pool_timeout_ms": 300,
        "request_lock_timeout_ms": 5_000,
        "org_max_concurrent_requests": 10,
    }
    with app_with(database_url, tmp_path, **settings) as client:
        tenant = signup(client)
        customer = make_customer(client, tenant)["id"]
        results: list[int] = []
        with row_locked(database_url, tenant.org_id, customer):
            # two requests wait on the lock, holding the pool's two connections
            waiting = [
                threading.Thread(
                    target=lambda: results.append(patch(client, tenant, customer).status_code)
                )
                for _ in range(2)
            ]
            for thread in waiting:
                thread.start()
            time.sleep(0.5)
            response, elapsed = within(3, lambda: client.get("/v1/me", headers=tenant.headers))
        for thread in waiting:
            thread.join()
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_busy"
        assert response.headers["retry-after"] == "1"
        assert elapsed < 2
        assert sorted(results) == [200, 200]  # they got the lock once it was released


def test_jobs_run_under_the_job_deadline_and_it_ends_with_the_transaction(rt: Runtime) -> None:
    with rt.db.transaction() as session:
        assert session.execute(text("SHOW statement_timeout")).scalar() == "2min"
        assert session.execute(text("SHOW lock_timeout")).scalar() == "30s"
    with rt.db.engine.connect() as conn:  # the same pooled connection, after the transaction
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
    with rt.db.api_sessionmaker() as session:
        assert session.execute(text("SHOW statement_timeout")).scalar() == "5s"
        assert session.execute(text("SHOW lock_timeout")).scalar() == "2s"


def test_the_limits_answers_are_documented_in_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    batch = paths["/v1/events/batch"]["post"]["responses"]
    assert {"413", "429", "503", "504"} <= set(batch)
    assert batch["413"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    me = paths["/v1/me"]["get"]["responses"]
    assert {"429", "503", "504"} <= set(me) and "413" not in me
    assert "504" not in paths["/health"]["get"]["responses"]
