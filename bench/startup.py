"""Start-up time of `kassa serve` to `/ready` = 200, against the embedded-database floor.

    .venv/bin/python bench/startup.py [--runs 5]

Prints, for each scenario, min/median/max seconds over the runs:
  floor  : a bare pgserver cold start (initdb + start) in a fresh directory, then stop
  cold   : `kassa serve` with a fresh data dir (initdb, migrations, keys, demo) to /ready
  warm   : `kassa serve` on an existing data dir to /ready
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def floor_once() -> float:
    code = (
        "import sys, time, warnings; warnings.simplefilter('ignore');"
        "from pgserver import get_server; t=time.perf_counter();"
        "s=get_server(sys.argv[1], cleanup_mode='stop'); s.psql('select 1');"
        "print(time.perf_counter()-t)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", code, str(Path(tmp) / "pg")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def serve_once(data_dir: Path) -> float:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(KASSA_DATA_DIR=str(data_dir), KASSA_LOG_LEVEL="WARNING")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kassa", "serve", "--port", str(port), "--demo"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("kassa serve exited early")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def report(name: str, values: list[float]) -> None:
    print(
        f"{name:<6} min {min(values):6.2f} s   median {statistics.median(values):6.2f} s"
        f"   max {max(values):6.2f} s   (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    floor = [floor_once() for _ in range(runs)]
    cold, warm = [], []
    for _ in range(runs):
        data_dir = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
        try:
            cold.append(serve_once(data_dir))
            warm.append(serve_once(data_dir))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    report("floor", floor)
    report("cold", cold)
    report("warm", warm)
    print(f"cold / floor (medians): {statistics.median(cold) / statistics.median(floor):.1f}x")


if __name__ == "__main__":
    main()
