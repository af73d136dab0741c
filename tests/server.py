"""`kassa serve` as a real process against the test database, for tests that must go through
real HTTP, a real socket and a real connection pool (floods, attacks, limits)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running `kassa serve`; ``url`` is its base URL, ``output()`` what it printed so far."""

    url: str
    data_dir: Path
    process: subprocess.Popen[str]

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


def _wait_ready(proc: subprocess.Popen[str], url: str, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"kassa serve exited with {proc.returncode}:\n{out}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("kassa serve did not become ready")


@contextmanager
def serve(
    database_url: str,
    data_dir: Path,
    *,
    worker: bool = True,
    ready_timeout: float = 60,
    **settings: str,
) -> Iterator[Server]:
    """Run `kassa serve` on a free port against ``database_url`` (an owner URL, already
    migrated or not: serve migrates). ``settings`` are Kassa settings by field name
    (``rate_limit_api="5/second"`` becomes ``KASSA_RATE_LIMIT_API``)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(
        KASSA_DATABASE_URL=database_url,
        KASSA_DATA_DIR=str(data_dir),
        KASSA_SECRET_KEY="test-secret-key-not-for-production",
        KASSA_LOG_LEVEL="WARNING",
        KASSA_LOG_FORMAT="console",
        KASSA_RATE_LIMIT_API="10000/second",
        KASSA_RATE_LIMIT_PUBLIC="10000/second",
        KASSA_LOGIN_IP_MAX_FAILURES="10000/minute",
    )
    env.update({f"KASSA_{name.upper()}": value for name, value in settings.items()})
    command = [sys.executable, "-m", "kassa", "serve", "--port", str(port), "--no-demo"]
    command.append("--worker" if worker else "--no-worker")
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # /ready wants a worker heartbeat; without a worker, liveness is all there is.
        _wait_ready(proc, url, "/ready" if worker else "/health", ready_timeout)
        yield Server(url, data_dir, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
