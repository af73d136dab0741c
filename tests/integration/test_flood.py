"""Through real HTTP against a real `kassa serve` (issue 13, section 2): one organization
flooding slow requests cannot take the API's connections from the others, and request bodies
are bounded before they are parsed or authenticated (Content-Length and chunked alike)."""

from __future__ import annotations

import json
import select
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import make_url

from tests.conftest import PASSWORD
from tests.server import Server, serve

SHARE = 2  # db_pool_size 4 → the default share is 4 // 2
BULK_LIMIT = 2 * 1024 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # the default org queue timeout (1.5 s): excess requests come back at a realistic pace
    settings = {
        "db_pool_size": "4",
        "request_lock_timeout_ms": "1500",
        "max_bulk_body_bytes": str(BULK_LIMIT),
    }
    with serve(database_url, tmp_path_factory.mktemp("flood"), **settings) as s:
        yield s


def signup(s: Server) -> tuple[str, dict[str, str]]:
    body = {
        "org_name": "Flood",
        "email": f"o-{uuid.uuid4().hex[:10]}@example.com",
        "password": PASSWORD,
    }
    response = httpx.post(f"{s.url}/v1/auth/signup", json=body, timeout=30)
    assert response.status_code == 201, response.text
    data = response.json()
    return data["org"]["id"], {"Authorization": f"Bearer {data['access_token']}"}


def owner_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


@contextmanager
def row_locked(database_url: str, org_id: str, customer_id: str) -> Iterator[None]:
    with psycopg.connect(owner_url(database_url)) as conn:
        conn.execute("SELECT set_config('app.org_id', %s, true)", (org_id,))
        conn.execute("SELECT 1 FROM customers WHERE id = %s FOR UPDATE", (customer_id,))
        yield
        conn.rollback()


def lock_waiters(database_url: str) -> int:
    """API backends (the app role) waiting for a lock right now."""
    with psycopg.connect(owner_url(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'kassa_app' "
            "AND datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_one_org_flooding_slow_requests_does_not_stall_another(
    server: Server, database_url: str
) -> None:
    org_a, flooder = signup(server)
    _, other = signup(server)
    with server.client() as c:
        customer = c.post("/v1/customers", json={"name": "Busy"}, headers=flooder).json()["id"]
    stop = threading.Event()
    a_answers: list[tuple[int, str, str | None]] = []
    b_latencies: list[float] = []
    b_statuses: list[int] = []
    ready: list[int] = []
    waiters: list[int] = []

    def flood() -> None:
        with server.client(timeout=60) as c:
            while not stop.is_set():
                r = c.patch(f"/v1/customers/{customer}", json={"name": "X"}, headers=flooder)
                code = r.json().get("code", "") if r.status_code >= 400 else ""
                a_answers.append((r.status_code, code, r.headers.get("retry-after")))

    def other_org() -> None:
        with server.client(timeout=60) as c:
            while not stop.is_set():
                started = time.monotonic()
                r = c.get("/v1/me", headers=other)
                b_latencies.append(time.monotonic() - started)
                b_statuses.append(r.status_code)
                time.sleep(0.02)

    def operations() -> None:
        with server.client(timeout=60) as c:
            while not stop.is_set():
                ready.append(c.get("/ready").status_code)
                waiters.append(lock_waiters(database_url))
                time.sleep(0.25)

    with row_locked(database_url, org_a, customer):
        threads = [threading.Thread(target=flood) for _ in range(16)]
        threads += [threading.Thread(target=other_org), threading.Thread(target=operations)]
        for t in threads:
            t.start()
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join(90)
    assert len(b_latencies) >= 20, f"the other org got {len(b_latencies)} answers in 5 s"
    b_latencies.sort()
    p99 = b_latencies[min(len(b_latencies) - 1, int(len(b_latencies) * 0.99))]
    assert set(b_statuses) == {200}, b_statuses
    assert p99 < 1.0, (p99, statistics.mean(b_latencies), len(b_latencies))
    assert set(ready) == {200}, ready
    # the flooding org held at most its share of connections, and was told so
    assert max(waiters) <= SHARE, waiters
    kinds = {(status, code) for status, code, _ in a_answers}
    assert (429, "org_concurrency_limit") in kinds, kinds
    assert (503, "lock_timeout") in kinds, kinds
    assert kinds <= {(429, "org_concurrency_limit"), (503, "lock_timeout"), (200, "")}, kinds
    assert {retry for status, _, retry in a_answers if status in (429, 503)} == {"1"}


# --- request bodies ------------------------------------------------------------------------


def _send_until_answered(
    s: Server, head: bytes, total: int, chunked: bool, piece: int = 64 * 1024
) -> tuple[bytes, int, float]:
    """Send ``head`` then up to ``total`` body bytes (chunked or not) until the server
    answers; returns (the response, body bytes sent by then, seconds taken)."""
    host, port = s.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setblocking(False)
    started = time.monotonic()
    sent = 0
    out = head
    response = b""
    try:
        while time.monotonic() - started < 30:
            want_write = bool(out) or sent < total
            readable, writable, _ = select.select([sock], [sock] if want_write else [], [], 1)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                response += data
                if _complete(response):
                    break
                continue
            if writable:
                if not out:
                    size = min(piece, total - sent)
                    data = b"x" * size
                    out = (f"{size:x}\r\n".encode() + data + b"\r\n") if chunked else data
                    sent += size
                try:
                    written = sock.send(out)
                except (BrokenPipeError, ConnectionResetError):
                    out = b""
                    total = sent  # the server stopped reading: only the answer is left
                    continue
                out = out[written:]
    finally:
        sock.close()
    return response, sent, time.monotonic() - started


def _complete(response: bytes) -> bool:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def _problem(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body) if body else {}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_lying_content_length_is_refused_before_reading(server: Server) -> None:
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 52428800\r\n\r\n"
    )
    response, sent, seconds = _send_until_answered(server, head, 50 * MiB, chunked=False)
    status, body = _problem(response)
    assert status == 413
    assert body["code"] == "payload_too_large"
    assert body["limit_bytes"] == MiB
    assert sent < 10 * MiB  # answered long before the 50 MB were out
    assert seconds < 5


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/events/batch"])
def test_a_chunked_body_is_cut_off_at_the_limit(server: Server, path: str) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    rss_before = _rss_kib(server.process.pid)
    response, sent, seconds = _send_until_answered(server, head, 50 * MiB, chunked=True)
    status, body = _problem(response)
    assert status == 413, response[:300]
    assert body["code"] == "payload_too_large"
    limit = BULK_LIMIT if path == "/v1/events/batch" else MiB
    assert body["limit_bytes"] == limit
    assert sent < limit + 10 * MiB  # socket buffers aside, nothing past the limit was taken
    assert seconds < 5
    # memory stays bounded: the server held at most the limit, not the 50 MB
    assert _rss_kib(server.process.pid) - rss_before < 20 * 1024


def test_bulk_paths_take_larger_bodies_and_limits_come_before_authentication(
    server: Server,
) -> None:
    payload = b'{"events": []' + b" " * int(1.5 * MiB) + b"}"
    with server.client() as c:
        ordinary = c.post("/v1/customers", content=payload, headers={"Authorization": "Bearer x"})
        bulk = c.post("/v1/events/batch", content=payload, headers={"Authorization": "Bearer x"})
    assert ordinary.status_code == 413  # before the (bad) credentials were looked at
    assert ordinary.headers["content-type"].startswith("application/problem+json")
    assert bulk.status_code == 401  # under the bulk limit: read, then refused by auth
