"""`kassa serve` as a real process: fresh data dir, embedded PostgreSQL, /ready = 200."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from kassa.config import Settings
from kassa.runtime import Runtime
from tests.server import free_port

pytestmark = pytest.mark.slow


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(KASSA_DATA_DIR=str(data_dir), KASSA_LOG_LEVEL="WARNING")
    return env


def _serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kassa", "serve", "--port", str(port), "--demo"],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError("kassa serve did not become ready")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return out


def test_serve_starts_ready_with_demo_and_keeps_data(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port)
    try:
        ready = _wait_ready(proc, port)
        assert ready.json()["status"] == "ready"
        login = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/login",
            json={"email": "demo@kassa.dev", "password": "kassa-demo-password"},
        )
        assert login.status_code == 200
        token = login.json()["access_token"]
        org_id = httpx.get(
            f"http://127.0.0.1:{port}/v1/me", headers={"Authorization": f"Bearer {token}"}
        ).json()["org"]["id"]
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        auth = {"Authorization": f"Bearer {token}"}
        invoices = httpx.get(f"http://127.0.0.1:{port}/v1/invoices?limit=100", headers=auth).json()[
            "data"
        ]
        statuses = {i["status"] for i in invoices}
        assert {"paid", "open"} <= statuses, statuses  # demo invoices to explore
        notes = httpx.get(f"http://127.0.0.1:{port}/v1/credit_notes", headers=auth).json()
        assert len(notes["data"]) == 1
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "sk_test_" in out and "demo@kassa.dev" in out
    assert not (tmp_path / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"

    proc = _serve(tmp_path, port)  # restart: same data, same demo org
    try:
        _wait_ready(proc, port)
        login = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/login",
            json={"email": "demo@kassa.dev", "password": "kassa-demo-password"},
        )
        me = httpx.get(
            f"http://127.0.0.1:{port}/v1/me",
            headers={"Authorization": f"Bearer {login.json()['access_token']}"},
        )
        assert me.json()["org"]["id"] == org_id
    finally:
        _stop(proc)


def test_admin_create_org_on_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kassa", "admin", "create-org", "--name", "Hilltop Lofts",
         "--owner-email", "ops@example.com", "--password", "a-long-enough-password"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Hilltop Lofts" in result.stdout and "ops@example.com" in result.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "kassa", "admin", "list-orgs"],
        env=_env(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Hilltop Lofts" in listed.stdout
    version = subprocess.run(
        [sys.executable, "-m", "kassa", "--version"], capture_output=True, text=True, check=False
    )
    assert version.stdout.startswith("kassa ")


def test_standalone_worker_heartbeats_and_stops_cleanly(settings: Settings, rt: Runtime) -> None:
    env = _env(Path(settings.data_dir))
    env["KASSA_DATABASE_URL"] = str(settings.database_url)
    env["KASSA_WORKER_HEARTBEAT_SECONDS"] = "0.5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kassa", "worker", "--concurrency", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    query = text(
        "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - interval '2 s'"
    )
    try:
        deadline = time.monotonic() + 60
        seen = 0
        while time.monotonic() < deadline and not seen:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            with rt.db.engine.connect() as conn:
                seen = conn.execute(query).scalar_one()
            time.sleep(0.2)
        assert seen >= 1
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "worker running" in out


def test_usage_rebuild_on_the_cli(settings: Settings, rt: Runtime) -> None:
    env = _env(Path(settings.data_dir))
    env["KASSA_DATABASE_URL"] = str(settings.database_url)
    result = subprocess.run(
        [sys.executable, "-m", "kassa", "usage", "rebuild"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hourly buckets in" in result.stdout
