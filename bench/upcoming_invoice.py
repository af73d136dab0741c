"""Time of `upcoming_invoice` for a subscription whose plan has 10 usage charges.

    .venv/bin/python bench/upcoming_invoice.py [--runs 300]

Runs against embedded PostgreSQL (a fresh `kassa_bench` database) or KASSA_DATABASE_URL.
Prints median and p95 over the runs for:
  floor      one round trip that loads the subscription row (the least any preview costs)
  service    kassa.subscriptions.upcoming.upcoming() inside a transaction
  http       GET /v1/subscriptions/{id}/upcoming_invoice through the ASGI app (auth included)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import _fresh_database, make_settings, signup  # noqa: E402

from kassa.app import create_app  # noqa: E402
from kassa.core.context import Principal, Role  # noqa: E402
from kassa.core.logging import configure_logging  # noqa: E402
from kassa.db import migrate  # noqa: E402
from kassa.runtime import Runtime  # noqa: E402
from kassa.subscriptions import support, upcoming  # noqa: E402

MODELS = [
    ("per_unit", {"unit_amount": "0.25"}),
    ("graduated", {"tiers": [{"up_to": 100, "unit_amount": "10"},
                             {"up_to": None, "unit_amount": "5", "flat_amount": 100}]}),
    ("volume", {"tiers": [{"up_to": 1000, "unit_amount": "2"},
                          {"up_to": None, "unit_amount": "1"}]}),
    ("package", {"package_size": 100, "package_amount": 500, "free_units": 10}),
    ("percentage", {"rate": "1.5"}),
]  # fmt: skip


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    for _ in range(min(20, runs)):
        fn()  # warm caches and the pool
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def report(name: str, ms: list[float]) -> float:
    median = statistics.median(ms)
    p95 = statistics.quantiles(ms, n=20)[18]
    print(f"{name:<8} median {median:7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    runs = parser.parse_args().runs
    configure_logging("WARNING", "console")
    os.environ.setdefault("PYTEST_XDIST_WORKER", "bench")
    url = os.environ.get("KASSA_DATABASE_URL") or _fresh_database("kassa_bench")
    settings = make_settings(Path(tempfile.mkdtemp()), url)
    rt = Runtime.build(settings)
    migrate.upgrade(rt.db.urls, settings)
    with TestClient(create_app(rt)) as client:
        tenant = signup(client)
        h = tenant.headers
        charges = []
        for i in range(10):
            model, props = MODELS[i % len(MODELS)]
            client.post("/v1/meters", headers=h, json={
                "event_name": f"m{i}", "name": f"Meter {i}", "aggregation": "sum",
                "value_property": "v"})  # fmt: skip
            charges.append({"meter": f"m{i}", "model": model, "properties": props})
        plan = client.post("/v1/plans", headers=h, json={
            "code": "bench", "name": "Bench", "currency": "eur", "interval": "month",
            "amount": 4900, "charges": charges}).json()  # fmt: skip
        customer = client.post("/v1/customers", headers=h, json={"name": "B"}).json()
        sub = client.post("/v1/subscriptions", headers=h, json={
            "customer": customer["id"], "plan": plan["id"]}).json()  # fmt: skip
        who = Principal(org_id=tenant.org_id, role=Role.OWNER, user_id=tenant.user_id)

        def floor() -> None:
            with rt.db.transaction(tenant.org_id) as session:
                support.load(session, tenant.org_id, sub["id"])

        def service() -> None:
            with rt.db.transaction(tenant.org_id) as session:
                upcoming.upcoming(session, who, sub["id"], rt.clock)

        def http() -> None:
            response = client.get(f"/v1/subscriptions/{sub['id']}/upcoming_invoice", headers=h)
            assert response.status_code == 200
            assert len(response.json()["lines"]) == 11

        base = report("floor", timed(floor, runs))
        svc = report("service", timed(service, runs))
        report("http", timed(http, runs))
        print(f"service / floor (medians): {svc / base:.1f}x")
    rt.close()


if __name__ == "__main__":
    main()
