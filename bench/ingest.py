"""Usage ingestion through the real HTTP batch endpoint vs PostgreSQL's raw COPY limit.

    .venv/bin/python bench/ingest.py [--events 1000000] [--customers 10000] [--clients 3]

Starts `kassa serve` (embedded PostgreSQL in a temporary data dir, or KASSA_DATABASE_URL),
creates an org, 5 meters and the customers, then:
  1. http   POST /v1/events/batch, 10 000 events per request, from --clients threads
  2. copy   the same rows COPYed into a table of the same shape and unique key (the floor)
  3. query  the current-period usage of a customer with 100 000 events (GET .../usage)
and prints events/s for both paths, their ratio, and the query latency (median, p95).
Targets: http ≥ 0.5 × copy; usage query < 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

BATCH = 10_000
METERS = [
    ("api_calls", "count", None),
    ("gb", "sum", "gb"),
    ("peak_kw", "max", "kw"),
    ("users", "unique_count", "user"),
    ("seats", "latest", "seats"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "KASSA_DATA_DIR"}
    env.update(
        KASSA_DATA_DIR=str(data_dir),
        KASSA_LOG_LEVEL="WARNING",
        KASSA_RATE_LIMIT_API="1000000/second",
        KASSA_RATE_LIMIT_PUBLIC="1000/second",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kassa", "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("kassa serve did not start")


def event(i: int, customer: str, now: datetime, rng: random.Random) -> dict[str, object]:
    name, _, prop = METERS[i % len(METERS)]
    properties: dict[str, object] = {}
    if prop == "user":
        properties[prop] = f"u{rng.randrange(50)}"
    elif prop is not None:
        properties[prop] = rng.randrange(1, 1000)
    ts = now - timedelta(seconds=rng.randrange(20 * 86_400))
    return {
        "event_id": f"e{i}",
        "customer": customer,
        "event_name": name,
        "timestamp": ts.isoformat(),
        "properties": properties,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="kassa-ingest-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # first start: initdb + tuning; the embedded server's shared_buffers take effect from
    # the second start, which is what a long-running installation sees
    first = start_server(data_dir, port)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=60)
    proc = start_server(data_dir, port)
    try:
        run(base, data_dir, args)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


def run(base: str, data_dir: Path, args: argparse.Namespace) -> None:
    client = httpx.Client(base_url=base, timeout=300)
    signup = client.post(
        "/v1/auth/signup",
        json={
            "org_name": "Bench",
            "email": f"bench{time.time_ns()}@example.com",
            "password": "bench-password-123",
        },
    ).json()
    headers = {"Authorization": f"Bearer {signup['access_token']}"}
    for name, agg, prop in METERS:
        body: dict[str, object] = {"event_name": name, "name": name, "aggregation": agg}
        if agg == "unique_count":
            body["unique_property"] = prop
        elif prop:
            body["value_property"] = prop
        assert client.post("/v1/meters", json=body, headers=headers).status_code == 201
    print(f"creating {args.customers} customers …", flush=True)
    for i in range(args.customers):
        client.post(
            "/v1/customers", json={"name": f"c{i}", "external_id": f"c{i}"}, headers=headers
        )
    now = datetime.now(UTC)
    rng = random.Random(7)
    events = [event(i, f"c{rng.randrange(args.customers)}", now, rng) for i in range(args.events)]
    bodies = [
        json.dumps({"events": events[i : i + BATCH]}).encode() for i in range(0, len(events), BATCH)
    ]
    print(f"{len(events)} events in {len(bodies)} batches; sending …", flush=True)

    queue = list(reversed(bodies))
    lock = threading.Lock()
    accepted = [0]

    def sender() -> None:
        with httpx.Client(base_url=base, timeout=600) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                r = c.post(
                    "/v1/events/batch",
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert r.status_code == 202, r.text[:500]
                with lock:
                    accepted[0] += r.json()["accepted"]

    started = time.perf_counter()
    threads = [threading.Thread(target=sender) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    http_s = time.perf_counter() - started
    assert accepted[0] == len(events), accepted[0]
    http_rate = len(events) / http_s

    copy_rate = copy_floor(data_dir, events)

    big = "big-customer"
    client.post("/v1/customers", json={"name": "big", "external_id": big}, headers=headers)
    plan = client.post(
        "/v1/plans",
        headers=headers,
        json={
            "code": "bench",
            "name": "Bench",
            "currency": "eur",
            "interval": "month",
            "charges": [
                {"meter": "api_calls", "model": "per_unit", "properties": {"unit_amount": "0.1"}}
            ],
        },
    ).json()
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    sub = client.post(
        "/v1/subscriptions",
        headers=headers,
        json={"customer": big, "plan": plan["id"], "start_at": ten_days_ago},
    ).json()
    start = datetime.fromisoformat(sub["current_period_start"])
    for b in range(10):
        chunk = [
            {
                "event_id": f"big{b}-{i}",
                "customer": big,
                "event_name": "api_calls",
                "timestamp": (start + timedelta(seconds=(b * BATCH + i) * 2)).isoformat(),
            }
            for i in range(BATCH)
        ]
        client.post("/v1/events/batch", json={"events": chunk}, headers=headers)
    url = f"/v1/customers/{big}/usage?meter=api_calls"
    got = client.get(url, headers=headers).json()
    assert got["value"] == "100000", got
    latencies, server = [], []
    for _ in range(200):
        t0 = time.perf_counter()
        r = client.get(url, headers=headers)
        latencies.append((time.perf_counter() - t0) * 1000)
        server.append(float(r.headers["server-timing"].split("dur=")[1]))

    print()
    print(
        f"http   {http_rate:10,.0f} events/s   ({len(events):,} events in {http_s:.1f} s, "
        f"{args.clients} clients)"
    )
    print(f"copy   {copy_rate:10,.0f} events/s   (raw COPY into the same shape and unique key)")
    print(f"ratio  http / copy = {http_rate / copy_rate:.2f}   (target ≥ 0.50)")
    p95 = statistics.quantiles(latencies, n=20)[18]
    print(
        f"query  current-period usage of a customer with 100 000 events: "
        f"server median {statistics.median(server):.2f} ms "
        f"(p95 {statistics.quantiles(server, n=20)[18]:.2f}); HTTP round trip median "
        f"{statistics.median(latencies):.2f} ms (p95 {p95:.2f}); target < 10 ms"
    )


def copy_floor(data_dir: Path, events: list[dict[str, object]]) -> float:
    """COPY the same rows into a same-shaped table with the same unique key."""
    url = os.environ.get("KASSA_DATABASE_URL")
    if url is None:
        socket_dir = data_dir / "pg"
        url = f"host={socket_dir} user=postgres dbname=kassa"
    rows = [
        (
            f"evt_{i:026d}",
            e["event_id"],
            e["customer"],
            "mtr_x",
            e["event_name"],
            e["timestamp"],
            None,
            None,
            json.dumps(e["properties"]),
        )
        for i, e in enumerate(events)
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (LIKE usage_events INCLUDING ALL)")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(
                "COPY bench_copy (id, event_id, customer_id, meter_id, event_name, ts, value,"
                " unique_value, properties, org_id, received_at, late) FROM STDIN"
            ) as copy,
        ):
            for r in rows:
                copy.write_row((*r, "org_bench", "2026-01-01T00:00:00Z", False))
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy")
    return len(rows) / elapsed


if __name__ == "__main__":
    main()
