"""The CLI refuses what the API refuses, and prints ids whole (issue 13 §5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kassa.config import Settings
from tests.conftest import Tenant

ROOT = Path(__file__).resolve().parents[2]


def kassa(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(
        KASSA_DATABASE_URL=str(settings.database_url),
        KASSA_DATA_DIR=str(settings.data_dir),
        KASSA_SECRET_KEY="test-secret-key-not-for-production",
        KASSA_LOG_LEVEL="WARNING",
        COLUMNS="80",  # what a pipe gets: Rich falls back to 80 columns
    )
    return subprocess.run(
        [sys.executable, "-m", "kassa", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip


def test_a_billing_run_in_the_future_is_refused(settings: Settings, tenant: Tenant) -> None:
    result = kassa(settings, "billing", "run", "--org", tenant.org_id, "--as-of", "2999-01-01")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--as-of" in result.stderr and "future" in result.stderr
    assert "invoice(s) issued" not in result.stdout


def test_a_billing_run_for_an_unknown_org_is_refused(settings: Settings) -> None:
    result = kassa(settings, "billing", "run", "--org", "org_01M96PYS22C7PYJ1NDEQCSCAQQ")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--org" in result.stderr and "no organization" in result.stderr


def test_list_orgs_prints_whole_ids_when_piped(settings: Settings, tenant: Tenant) -> None:
    table = kassa(settings, "admin", "list-orgs")
    assert table.returncode == 0, table.stderr
    assert tenant.org_id in table.stdout
    listed = kassa(settings, "admin", "list-orgs", "--json")
    assert listed.returncode == 0, listed.stderr
    orgs = {o["id"]: o for o in json.loads(listed.stdout)}
    assert orgs[tenant.org_id]["name"] == "Acme Rentals"
    assert set(orgs[tenant.org_id]) == {"id", "name", "mode", "currency", "created_at"}
