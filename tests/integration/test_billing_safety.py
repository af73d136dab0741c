"""Billing safety (issue 13, docs/billing-safety.md): bounded back-dating and catch-up,
bounded test clocks and plan migrations, amounts bounded, and a billing run that isolates
a poisoned subscription: everything else is billed, the poisoned one recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.config import Settings
from kassa.core.clock import FrozenClock
from kassa.core.context import Principal, Role
from kassa.events.models import DomainEvent
from kassa.invoicing import billing
from kassa.invoicing.models import Invoice
from kassa.runtime import Runtime
from kassa.subscriptions import limits
from kassa.subscriptions import service as subscriptions
from kassa.subscriptions.schemas import SubscriptionIn
from tests.conftest import Tenant, create, make_customer, make_plan, make_subscription, signup
from tests.integration.test_billing_runs import _cli

# a unit price and a usage each plausible on its own, whose product (10^20 minor units) is
# beyond the bigint columns: today's crash, a recorded billing error now
POISON_PRICE = "1000000000000"
POISON_USAGE = 100_000_000


def field_of(response: Any) -> list[str]:
    return [e["field"] for e in response.json().get("errors", [])]


def test_start_at_beyond_the_bounds_is_refused(client: TestClient, tenant: Tenant) -> None:
    customer = make_customer(client, tenant)["id"]
    plan = make_plan(client, tenant)["id"]
    now = datetime.now(UTC)
    for start in (
        "0001-01-01T00:00:00Z",  # ~24 000 periods in one transaction before
        (now - timedelta(days=400)).isoformat(),
        "9999-12-31T00:00:00Z",  # 500 before
        (now + timedelta(days=6 * 366)).isoformat(),
    ):
        r = client.post(
            "/v1/subscriptions",
            json={"customer": customer, "plan": plan, "start_at": start},
            headers=tenant.headers,
        )
        assert r.status_code == 422, (start, r.text)
        assert field_of(r) == ["start_at"]
        assert r.json()["code"] == "out_of_range"
    r = client.post(
        "/v1/subscriptions",
        json={"customer": customer, "plan": plan, "billing_anchor": "0001-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert r.status_code == 422, r.text
    assert field_of(r) == ["billing_anchor"]


def count_invoices(rt: Runtime, org_id: str, sub_id: str) -> tuple[int, int]:
    """(invoices, distinct periods) of a subscription."""
    with rt.db.transaction(org_id) as session:
        rows = session.execute(
            select(Invoice.period_start, Invoice.period_end).where(
                Invoice.org_id == org_id, Invoice.subscription_id == sub_id
            )
        ).all()
    return len(rows), len(set(rows))


def test_a_long_catch_up_runs_in_bounded_steps(
    client: TestClient, tenant: Tenant, rt: Runtime
) -> None:
    """60 daily periods back: the request catches up 24 (the per-step bound), the billing run
    the rest, 24 per step; nothing lost, nothing doubled."""
    bound = limits.get().catchup_per_step
    assert bound == 24
    client.patch("/v1/org", json={"invoice_grace_seconds": 0}, headers=tenant.headers)
    plan = make_plan(client, tenant, interval="day", amount=100, pay_in_advance=False)
    start = (datetime.now(UTC) - timedelta(days=60, hours=1)).replace(microsecond=0)
    sub = make_subscription(
        client,
        tenant,
        plan=plan["id"],
        start_at=start.isoformat(),
        customer=make_customer(client, tenant, timezone="UTC")["id"],
    )
    assert count_invoices(rt, tenant.org_id, sub["id"]) == (bound, bound)
    r = client.get(f"/v1/subscriptions/{sub['id']}/upcoming_invoice", headers=tenant.headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "subscription_catching_up"
    steps = []
    for _ in range(5):
        steps.append(billing.run(rt.db, rt.clock, org_id=tenant.org_id).transitions)
        if steps[-1] == 0:
            break
    assert steps == [24, 12, 0]
    assert count_invoices(rt, tenant.org_id, sub["id"]) == (60, 60)
    r = client.get(f"/v1/subscriptions/{sub['id']}", headers=tenant.headers)
    assert r.json()["current_period_end"] > datetime.now(UTC).isoformat()[:19]
    r = client.get(f"/v1/subscriptions/{sub['id']}/upcoming_invoice", headers=tenant.headers)
    assert r.status_code == 200, r.text


def test_test_clock_times_are_bounded(client: TestClient, tenant: Tenant) -> None:
    r = client.post(
        "/v1/test_clocks", json={"frozen_time": "0001-01-01T00:00:00Z"}, headers=tenant.headers
    )
    assert r.status_code == 422, r.text  # a Kiritimati (UTC+14) customer on it: 500 before
    assert field_of(r)[0].endswith("frozen_time")
    tc = create(client, tenant, "/v1/test_clocks", {"frozen_time": "2026-01-01T00:00:00Z"})
    r = client.post(
        f"/v1/test_clocks/{tc['id']}/advance",
        json={"frozen_time": "9999-12-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert r.status_code == 422, r.text  # 500 before
    assert field_of(r)[0].endswith("frozen_time")


def test_a_clock_in_1_bc_in_utc_is_refused_and_the_list_still_reads(
    client: TestClient, tenant: Tenant
) -> None:
    """The first deep run's 5xx: this clock was stored (1 BC in UTC) and every later
    ``GET /v1/test_clocks`` answered 500 (psycopg cannot read a BC timestamp)."""
    r = client.post(
        "/v1/test_clocks",
        json={"frozen_time": "0001-01-01T00:00:00+06:00"},
        headers=tenant.headers,
    )
    assert r.status_code == 422, r.text
    assert field_of(r)[0].endswith("frozen_time")
    r = client.get("/v1/test_clocks", headers=tenant.headers)
    assert r.status_code == 200, r.text


def test_an_advance_needing_too_many_transitions_is_refused(
    client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "_current", limits.Limits(clock_advance_transitions=10))
    tc = create(client, tenant, "/v1/test_clocks", {"frozen_time": "2026-01-01T00:00:00Z"})
    customer = make_customer(client, tenant, test_clock=tc["id"])["id"]
    plan = make_plan(client, tenant, interval="day", amount=100, pay_in_advance=False)
    make_subscription(client, tenant, customer=customer, plan=plan["id"])
    r = client.post(
        f"/v1/test_clocks/{tc['id']}/advance",
        json={"frozen_time": "2026-01-31T00:00:00Z"},
        headers=tenant.headers,
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "clock_advance_too_large"
    assert (
        client.get(f"/v1/test_clocks/{tc['id']}", headers=tenant.headers)
        .json()["frozen_time"]
        .startswith("2026-01-01")
    )
    r = client.post(
        f"/v1/test_clocks/{tc['id']}/advance",
        json={"frozen_time": "2026-01-06T00:00:00Z"},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text


def test_a_plan_migration_moves_a_bounded_number_per_request(
    client: TestClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "_current", limits.Limits(plan_migration_per_request=2))
    plan = make_plan(client, tenant)
    for _ in range(3):
        make_subscription(client, tenant, plan=plan["id"])
    r = client.patch(f"/v1/plans/{plan['code']}", json={"amount": 70000}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    body = {"from_version": 1, "to_version": 2, "effective": "period_end"}
    moved = []
    for _ in range(3):
        r = client.post(f"/v1/plans/{plan['code']}/migrate", json=body, headers=tenant.headers)
        assert r.status_code == 200, r.text
        moved.append((r.json()["subscriptions"], r.json()["has_more"]))
    assert moved == [(2, True), (1, False), (0, False)]


def poisoned_plan(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    meter = create(
        client,
        tenant,
        "/v1/meters",
        {
            "event_name": f"kwh-{uuid.uuid4().hex[:8]}",
            "name": "kWh",
            "aggregation": "sum",
            "value_property": "n",
            "lateness_seconds": 90 * 86_400,
        },
    )
    return make_plan(
        client,
        tenant,
        amount=1000,
        pay_in_advance=False,
        charges=[
            {"meter": meter["id"], "model": "per_unit", "properties": {"unit_amount": POISON_PRICE}}
        ],
    ) | {"event_name": meter["event_name"]}


def poison(client: TestClient, tenant: Tenant, customer: str, event: str, at: datetime) -> None:
    r = client.post(
        "/v1/events",
        json={
            "event_id": uuid.uuid4().hex,
            "customer": customer,
            "event_name": event,
            "timestamp": at.isoformat(),
            "properties": {"n": POISON_USAGE},
        },
        headers=tenant.headers,
    )
    assert r.status_code in (200, 201, 202), r.text


def billed_org(
    client: TestClient, rt: Runtime, tenant: Tenant, healthy: int, poisoned: bool
) -> tuple[list[str], str | None]:
    """``healthy`` monthly subscriptions (in arrears, one period end due) and, if
    ``poisoned``, one whose usage rates beyond the columns; created 35 days ago while no
    billing ran."""
    client.patch("/v1/org", json={"invoice_grace_seconds": 0}, headers=tenant.headers)
    plan = make_plan(client, tenant, amount=1000, pay_in_advance=False)
    bad_plan = poisoned_plan(client, tenant) if poisoned else plan
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=35)
    who = Principal(org_id=tenant.org_id, role=Role.OWNER, user_id=tenant.user_id)
    ids: list[str] = []
    bad = None
    customers = [make_customer(client, tenant, timezone="UTC")["id"] for _ in range(healthy + 1)]
    with rt.db.transaction(tenant.org_id) as session:
        for n, customer in enumerate(customers[: healthy + poisoned]):
            is_bad = poisoned and n == min(1, healthy)
            data = SubscriptionIn(
                customer=customer, plan=bad_plan["id"] if is_bad else plan["id"], start_at=start
            )
            sub = subscriptions.create(session, who, data, FrozenClock(start))
            if is_bad:
                bad = sub.id
                bad_customer = customer
            else:
                ids.append(sub.id)
    if bad is not None:
        poison(client, tenant, bad_customer, bad_plan["event_name"], start + timedelta(days=1))
    return ids, bad


@pytest.mark.parametrize("set_based", [True, False])
def test_a_poisoned_subscription_stops_nobody_elses_billing(
    client: TestClient, rt: Runtime, set_based: bool
) -> None:
    a, b = signup(client, name="Poisoned"), signup(client, name="Healthy")
    a_ids, bad = billed_org(client, rt, a, 3, True)
    b_ids, _ = billed_org(client, rt, b, 2, False)
    assert bad is not None
    results = [
        billing.run(rt.db, rt.clock, org_id=org, set_based=set_based)
        for org in (a.org_id, b.org_id)
    ]
    assert [r.failed for r in results] == [1, 0]
    assert [r.invoices_created for r in results] == [3, 2]
    for org, ids in ((a.org_id, a_ids), (b.org_id, b_ids)):
        for sub_id in ids:
            assert count_invoices(rt, org, sub_id) == (1, 1)
    assert count_invoices(rt, a.org_id, bad) == (0, 0)
    r = client.get(f"/v1/subscriptions/{bad}", headers=a.headers)
    error = r.json()["billing_error"]
    assert (error["code"], error["attempts"]) == ("amount_out_of_range", 1)
    assert error["first_failed_at"] == error["last_failed_at"]
    with rt.db.transaction(a.org_id) as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(DomainEvent)
                .where(
                    DomainEvent.org_id == a.org_id,
                    DomainEvent.type == "subscription.billing_failed",
                    DomainEvent.object_id == bad,
                )
            )
            == 1
        )
    # the next run leaves it alone until its backoff is over, then tries again
    again = billing.run(rt.db, rt.clock, org_id=a.org_id, set_based=set_based)
    assert (again.failed, again.transitions) == (0, 0)
    later = FrozenClock(datetime.now(UTC) + timedelta(hours=1))
    again = billing.run(rt.db, later, org_id=a.org_id, set_based=set_based)
    assert again.failed == 1
    error = client.get(f"/v1/subscriptions/{bad}", headers=a.headers).json()["billing_error"]
    assert error["attempts"] == 2


def test_an_amount_beyond_the_columns_is_a_billing_error_in_the_preview(
    client: TestClient, rt: Runtime, tenant: Tenant
) -> None:
    _, bad = billed_org(client, rt, tenant, 0, True)
    r = client.get(f"/v1/subscriptions/{bad}/upcoming_invoice", headers=tenant.headers)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "amount_out_of_range"


def test_the_billing_command_refuses_a_future_as_of_and_an_unknown_org(
    settings: Settings, tenant: Tenant
) -> None:
    """Both exited 0 before (a future --as-of silently clamped to now)."""
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat(timespec="seconds")
    for args, hint in (
        (("--as-of", future[:19], "--org", tenant.org_id), "--as-of"),
        (("--org", "org_00000000000000000000000000"), "--org"),
    ):
        proc = _cli(settings, "billing", "run", *args)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2, out
        assert hint in out.decode()
