"""Billing runs: exactly one invoice per subscription period whatever happens — repeated
runs, concurrent workers, a real worker process killed with SIGKILL at random moments —
gapless numbers under concurrent finalization, and a ledger that verifies clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.config import Settings
from kassa.core.clock import FrozenClock
from kassa.core.context import Principal, Role
from kassa.invoicing import billing
from kassa.invoicing import service as invoicing
from kassa.invoicing.models import Invoice
from kassa.ledger.verify import verify
from kassa.runtime import Runtime
from kassa.subscriptions import service as subscriptions
from kassa.subscriptions.models import Subscription
from kassa.subscriptions.schemas import SubscriptionIn
from tests.conftest import Tenant, make_customer, make_plan, signup

MONTHS_AGO = 100  # days: three or four period ends have passed


def backdated(
    client: TestClient, rt: Runtime, tenant: Tenant, count: int, days_ago: int = MONTHS_AGO
) -> datetime:
    """``count`` subscriptions (monthly, billed in arrears) created ``days_ago`` while no
    billing ran since: every period end since is due now. (Those one period behind are
    billed by the set-based path, those further behind by the per-subscription engine.)"""
    r = client.patch("/v1/org", json={"invoice_grace_seconds": 0}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    plan = make_plan(client, tenant, amount=1000, pay_in_advance=False)
    customers = [make_customer(client, tenant, timezone="UTC")["id"] for _ in range(count)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days_ago)
    who = Principal(org_id=tenant.org_id, role=Role.OWNER, user_id=tenant.user_id)
    with rt.db.transaction(tenant.org_id) as session:
        for customer in customers:
            data = SubscriptionIn(customer=customer, plan=plan["id"], start_at=start)
            subscriptions.create(session, who, data, FrozenClock(start))
    return start


def assert_exactly_one_invoice_per_period(rt: Runtime, org_id: str, start: datetime) -> int:
    """Per subscription: invoice periods tile [its start, current period start) with no gap
    and no overlap; numbers are gapless; the ledger verifies clean. ``start``: the earliest
    start."""
    total = 0
    with rt.db.transaction(org_id) as session:
        sequences = sorted(
            session.scalars(select(Invoice.sequence).where(Invoice.org_id == org_id))
        )
        assert sequences == list(range(1, len(sequences) + 1)), "numbers with gaps"
        subs = session.scalars(select(Subscription).where(Subscription.org_id == org_id)).all()
        for sub in subs:
            periods = sorted(
                (i.period_start, i.period_end, i.status)
                for i in session.scalars(
                    select(Invoice).where(
                        Invoice.org_id == org_id, Invoice.subscription_id == sub.id
                    )
                )
            )
            assert periods, f"{sub.id} was never billed"
            assert periods[0][0] == sub.start_at >= start
            for (_, end, _), (nxt, _, _) in zip(periods, periods[1:], strict=False):
                assert end == nxt, f"{sub.id}: gap or overlap at {end} / {nxt}"
            assert periods[-1][1] == sub.current_period_start
            assert {status for *_, status in periods} == {"open"}
            total += len(periods)
        assert verify(session, org_id) == []
    return total


def test_running_twice_bills_each_period_once(
    client: TestClient, tenant: Tenant, rt: Runtime
) -> None:
    start = backdated(client, rt, tenant, 5)
    first = billing.run(rt.db, rt.clock, org_id=tenant.org_id)
    assert first.invoices_created >= 15
    assert first.invoices_finalized == first.invoices_created  # grace 0: finalized at once
    second = billing.run(rt.db, rt.clock, org_id=tenant.org_id)
    assert (second.transitions, second.invoices_created) == (0, 0)
    assert assert_exactly_one_invoice_per_period(rt, tenant.org_id, start) == (
        first.invoices_created
    )


def test_two_workers_billing_at_once(client: TestClient, tenant: Tenant, rt: Runtime) -> None:
    start = backdated(client, rt, tenant, 12)
    backdated(client, rt, tenant, 12, days_ago=35)  # one period behind: the set-based path
    billing.refresh_statistics(rt.db)  # (else one worker may spend the run analyzing)
    together = threading.Barrier(2)

    def worker(_: int) -> billing.RunResult:
        together.wait()
        return billing.run(rt.db, rt.clock, org_id=tenant.org_id, chunk=2)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(worker, [0, 1]))
    created = sum(r.invoices_created for r in results)
    assert created == assert_exactly_one_invoice_per_period(rt, tenant.org_id, start)
    assert all(r.invoices_created > 0 for r in results)  # both did part of the work


def test_numbers_stay_gapless_under_50_concurrent_finalizations(
    client: TestClient, rt: Runtime
) -> None:
    tenant = signup(client, name="Numbering")
    customer = make_customer(client, tenant)["id"]
    drafts = []
    for n in range(50):
        r = client.post(
            "/v1/invoices",
            json={"customer": customer, "lines": [{"description": f"#{n}", "unit_amount": 100}]},
            headers=tenant.headers,
        )
        drafts.append(r.json()["id"])

    def finalize(invoice_id: str) -> str:
        with rt.db.transaction(tenant.org_id) as session:
            invoice = invoicing.load(session, tenant.org_id, invoice_id, lock=True)
            invoicing.finalize(session, invoice, rt.clock.now(), rt.clock)
            assert invoice.number is not None
            return invoice.number

    with ThreadPoolExecutor(10) as pool:
        numbers = list(pool.map(finalize, drafts))
    assert sorted(int(n.rsplit("-", 1)[1]) for n in numbers) == list(range(1, 51))
    with rt.db.transaction(tenant.org_id) as session:
        assert verify(session, tenant.org_id) == []


def _cli(settings: Settings, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        KASSA_DATABASE_URL=str(settings.database_url),
        KASSA_DATA_DIR=str(settings.data_dir),
        KASSA_SECRET_KEY="test-secret-key-not-for-production",
        KASSA_LOG_LEVEL="WARNING",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "kassa", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
    )


@pytest.mark.slow
def test_a_billing_worker_killed_at_random_moments_never_double_bills(
    client: TestClient, tenant: Tenant, rt: Runtime, settings: Settings
) -> None:
    # several periods behind (the per-subscription engine) and one (the set-based path):
    # more work than 20 runs killed early get through
    start = backdated(client, rt, tenant, 80)
    backdated(client, rt, tenant, 80, days_ago=35)
    rng = random.Random(20261122)

    def invoices() -> int:
        with rt.db.transaction(tenant.org_id) as session:
            return session.scalar(
                select(func.count()).select_from(Invoice).where(Invoice.org_id == tenant.org_id)
            ) or 0  # fmt: skip

    kills = 0
    for _ in range(20):
        # killed at a random moment once it has committed a random number of invoices
        # (so each run gets somewhere, however fast the machine and the code)
        before, wanted = invoices(), rng.randint(1, 8)
        proc = _cli(settings, "billing", "run", "--org", tenant.org_id, "--chunk", "3")
        deadline = time.monotonic() + 30
        while proc.poll() is None and invoices() < before + wanted and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    done = _cli(settings, "billing", "run", "--org", tenant.org_id)
    out, _ = done.communicate(timeout=120)
    assert done.returncode == 0, out.decode()
    assert kills >= 15, f"only {kills} runs were still working when killed"
    assert assert_exactly_one_invoice_per_period(rt, tenant.org_id, start) >= 80 * 3 + 80
    check = _cli(settings, "ledger", "verify", "--org", tenant.org_id)
    out, _ = check.communicate(timeout=60)
    assert check.returncode == 0, out.decode()
    assert b"ledger sound" in out


@pytest.mark.parametrize("set_based", [True, False])
def test_a_run_finalizes_what_it_issues_once_its_window_is_over(
    client: TestClient, tenant: Tenant, rt: Runtime, monkeypatch: pytest.MonkeyPatch,
    set_based: bool,
) -> None:  # fmt: skip
    """An invoice whose grace is over at the run's as_of is finalized at as_of by the chunk
    that issues it (the second pass does not see it); one whose grace is not over stays a
    draft for the second pass of a later run."""
    r = client.patch("/v1/org", json={"invoice_grace_seconds": 3600}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    plan = make_plan(client, tenant, amount=1000, pay_in_advance=False)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    who = Principal(org_id=tenant.org_id, role=Role.OWNER, user_id=tenant.user_id)

    def subscribe(count: int) -> list[str]:
        customers = [make_customer(client, tenant, timezone="UTC")["id"] for _ in range(count)]
        with rt.db.transaction(tenant.org_id) as session:
            return [
                subscriptions.create(
                    session, who, SubscriptionIn(customer=c, plan=plan["id"], start_at=start),
                    FrozenClock(start),
                ).id
                for c in customers
            ]  # fmt: skip

    def invoices(subs: list[str]) -> set[tuple[str, datetime | None]]:
        with rt.db.transaction(tenant.org_id) as session:
            return {
                (i.status, i.finalized_at)
                for i in session.scalars(
                    select(Invoice).where(
                        Invoice.org_id == tenant.org_id, Invoice.subscription_id.in_(subs)
                    )
                )
            }

    second_pass: list[int] = []
    if set_based:
        finalize_drafts = billing.bulk.finalize_drafts

        def spy(*args: Any, **kwargs: Any) -> tuple[int, Any]:
            found = finalize_drafts(*args, **kwargs)
            second_pass.append(found[0])
            return found

        monkeypatch.setattr(billing.bulk, "finalize_drafts", spy)
    else:
        due_drafts = billing._due_drafts

        def spy_one(*args: Any) -> list[Invoice]:
            drafts = due_drafts(*args)
            second_pass.append(len(drafts))
            return drafts

        monkeypatch.setattr(billing, "_due_drafts", spy_one)

    early_subs = subscribe(3)
    with rt.db.transaction(tenant.org_id) as session:
        end = session.get_one(Subscription, (tenant.org_id, early_subs[0])).current_period_end
    early = end + timedelta(minutes=30)  # the grace of an hour is not over
    result = billing.run(rt.db, rt.clock, early, org_id=tenant.org_id, set_based=set_based)
    assert (result.invoices_created, result.invoices_finalized) == (3, 0)
    assert invoices(early_subs) == {("draft", None)}
    late_subs = subscribe(3)
    later = end + timedelta(hours=2)  # it is: the new invoices are finalized as issued
    second_pass.clear()
    result = billing.run(rt.db, rt.clock, later, org_id=tenant.org_id, set_based=set_based)
    assert (result.invoices_created, result.invoices_finalized) == (3, 6)
    assert sum(second_pass) == 3  # the early drafts only
    assert invoices(early_subs) == invoices(late_subs) == {("open", later)}
    assert assert_exactly_one_invoice_per_period(rt, tenant.org_id, start) == 6


@pytest.mark.slow
def test_the_command_bills_in_several_processes(
    client: TestClient, tenant: Tenant, rt: Runtime, settings: Settings
) -> None:
    start = backdated(client, rt, tenant, 6)  # the per-subscription engine
    backdated(client, rt, tenant, 30, days_ago=35)  # the set-based path
    proc = _cli(
        settings, "billing", "run", "--org", tenant.org_id, "--workers", "2", "--chunk", "4"
    )
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    total = assert_exactly_one_invoice_per_period(rt, tenant.org_id, start)
    assert total >= 30 + 6 * 3
    assert f"{total} invoice(s) issued, {total} finalized" in " ".join(out.decode().split())
