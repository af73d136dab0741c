"""The set-based billing path against the per-subscription one: two organizations built
alike (plans in advance and in arrears, per-unit/graduated/volume/package usage, count, sum,
max, latest and unique_count meters, coupons, German, reverse-charge and foreign buyers,
customer credit, pending changes, a prorated change, a cancellation at period end, a trial,
a subscription two periods behind), one billed in bulk and one subscription at a time, must
end up with the same invoices, lines, numbers, ledger entries and events, ids and wall
times aside."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from kassa.core.clock import FrozenClock
from kassa.core.context import Principal, Role
from kassa.invoicing import billing
from kassa.ledger.verify import verify
from kassa.runtime import Runtime
from kassa.subscriptions import service as subscriptions
from kassa.subscriptions.schemas import ChangeIn, SubscriptionIn
from tests.conftest import create, make_customer, make_plan, signup

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
START = NOW - timedelta(days=40)  # one monthly period has ended, the next has not
ODD_START = START + timedelta(minutes=17, seconds=3)  # periods off the whole hours
TIERS = [
    {"up_to": 10, "unit_amount": "10"},
    {"up_to": 100, "unit_amount": "5", "flat_amount": 500},
    {"up_to": None, "unit_amount": "2.5", "flat_amount": 1000},
]
ID = re.compile(r"\b(?:cus|sub|inv|plan|cpn|mtr|il|ltx|la|wh|evt)_[0-9A-Z]{26}\b")


def build(client: TestClient, rt: Runtime, grace: int) -> tuple[str, list[str]]:
    """One organization with everything the billing run distinguishes; returns the org
    and its ids in creation order (the same order in every organization built)."""
    tenant = signup(client, name="Bulk Billing GmbH")
    made: list[str] = []

    def keep(obj: dict[str, Any]) -> str:
        made.append(obj["id"])
        return str(obj["id"])

    r = client.patch(
        "/v1/org",
        json={"country": "DE", "tax_ruleset": "eu_vat", "invoice_grace_seconds": grace},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    for name, agg, prop, late in [
        ("calls", "count", None, 0), ("gb", "sum", "gb", 3600), ("peak", "max", "v", 0),
        ("seats", "latest", "n", 0), ("users", "unique_count", "user", 0),
    ]:  # fmt: skip
        body: dict[str, Any] = {"event_name": name, "name": name.title(), "aggregation": agg,
                                "lateness_seconds": late}  # fmt: skip
        if agg == "unique_count":
            body["unique_property"] = prop
        elif prop:
            body["value_property"] = prop
        keep(create(client, tenant, "/v1/meters", body))
    graduated = {"model": "graduated", "properties": {"tiers": TIERS}}
    package = {"package_size": 5, "package_amount": 300, "free_units": 2}
    plans = [
        keep(make_plan(
            client, tenant, code=f"arrears-{grace}", amount=1900, pay_in_advance=False,
            charges=[{"meter": "calls", **graduated},
                     {"meter": "gb", "model": "per_unit", "properties": {"unit_amount": "0.75"}}],
        )),
        keep(make_plan(
            client, tenant, code=f"advance-{grace}", amount=4900, pay_in_advance=True,
            charges=[{"meter": "peak", "model": "volume", "properties": {"tiers": TIERS}},
                     {"meter": "calls", "model": "package", "properties": package},
                     {"meter": "seats", "model": "per_unit", "properties": {"unit_amount": "100"}}],
        )),
        keep(make_plan(client, tenant, code=f"flat-{grace}", amount=999, pay_in_advance=True)),
        keep(make_plan(
            client, tenant, code=f"users-{grace}", amount=0, pay_in_advance=False,
            charges=[{"meter": "users", "model": "per_unit", "properties": {"unit_amount": "50"}}],
        )),
    ]  # fmt: skip
    for coupon in (
        {"code": f"TEN{grace}", "percent_off": "10", "duration": "forever"},
        {"code": f"ONCE{grace}", "amount_off": 700, "currency": "eur", "duration": "once"},
    ):
        keep(create(client, tenant, "/v1/coupons", coupon))
    buyers = [
        {"address": {"country": "DE"}},
        {"address": {"country": "AT"}, "tax": {"kind": "business", "tax_id": "ATU12345678"}},
        {"address": {"country": "US"}},
    ]
    customers = [
        keep(make_customer(client, tenant, name=f"C{i}", timezone="UTC", **buyers[i % 3]))
        for i in range(14)
    ]
    # customer 5 has unused credit (a negative one-off invoice)
    r = client.post(
        "/v1/invoices",
        json={"customer": customers[5], "auto_finalize": True,
              "lines": [{"description": "Goodwill", "unit_amount": -900}]},
        headers=tenant.headers,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    made.append(r.json()["id"])
    who = Principal(org_id=tenant.org_id, role=Role.OWNER, user_id=tenant.user_id)
    subs: list[str] = []
    specs: list[dict[str, Any]] = [
        {"plan": 0},
        {"plan": 1},
        {"plan": 2},
        {"plan": 0, "coupon": f"TEN{grace}"},
        {"plan": 1, "coupon": f"ONCE{grace}", "quantity": 3},
        {"plan": 0},  # 5: credit
        {"plan": 3},
        {"plan": 1, "start": ODD_START},
        {"plan": 0, "change": "period_end"},
        {"plan": 1, "cancel": True},
        {"plan": 2, "trial_days": 60},
        {"plan": 0, "start": START - timedelta(days=31)},
        {"plan": 1, "change": "now"},
        {"plan": 2, "quantity": 2},
    ]
    with rt.db.transaction(tenant.org_id) as session:
        for customer, spec in zip(customers, specs, strict=True):
            start = spec.get("start", START)
            data = SubscriptionIn(
                customer=customer, plan=plans[spec["plan"]], start_at=start,
                coupon=spec.get("coupon"), quantity=spec.get("quantity", 1),
                trial_days=spec.get("trial_days"),
            )  # fmt: skip
            sub = subscriptions.create(session, who, data, FrozenClock(start))
            subs.append(sub.id)
    made += subs
    later = FrozenClock(START + timedelta(days=3))
    with rt.db.transaction(tenant.org_id) as session:
        for sub_id, spec in zip(subs, specs, strict=True):
            if spec.get("change"):
                change = ChangeIn(plan=plans[1], quantity=2, effective=spec["change"])
                subscriptions.change(session, who, sub_id, change, later)
            if spec.get("cancel"):
                subscriptions.cancel(session, who, sub_id, True, True, later)
    events: list[dict[str, Any]] = []
    for i, customer in enumerate(customers):
        for k in range(1 + i % 4):
            at = START + timedelta(days=2 + k * 5, minutes=7 * i, seconds=k)
            events += [
                {"customer": customer, "event_name": "calls", "timestamp": at.isoformat()},
                {"customer": customer, "event_name": "gb", "timestamp": at.isoformat(),
                 "properties": {"gb": f"{i + k}.5"}},
                {"customer": customer, "event_name": "peak", "timestamp": at.isoformat(),
                 "properties": {"v": 7 * i + k}},
                {"customer": customer, "event_name": "seats", "timestamp": at.isoformat(),
                 "properties": {"n": i + k}},
                {"customer": customer, "event_name": "users", "timestamp": at.isoformat(),
                 "properties": {"user": f"u{k % 2}"}},
            ]  # fmt: skip
    # one right at the odd subscription's period end edge (a partial hour)
    edge = ODD_START + timedelta(days=30, seconds=-5)
    events.append({"customer": customers[7], "event_name": "calls", "timestamp": edge.isoformat()})
    for n, event in enumerate(events):
        event["event_id"] = f"e{n}"
    r = client.post("/v1/events/batch", json={"events": events}, headers=tenant.headers)
    assert r.status_code == 202 and not r.json()["rejected"], r.text
    return tenant.org_id, made


def snapshot(rt: Runtime, org_id: str, made: list[str], run_at: datetime) -> dict[str, Any]:
    """Everything the billing run wrote (rows written at ``run_at``, the run's clock), with
    ids replaced by stable names."""
    names = {obj_id: f"#{n}" for n, obj_id in enumerate(made)}
    with rt.db.transaction(org_id) as session:

        def rows(sql: str) -> list[dict[str, Any]]:
            params = {"org": org_id, "run": run_at}
            return [dict(r._mapping) for r in session.execute(text(sql), params)]

        invoices = rows("SELECT * FROM invoices WHERE org_id = :org AND created_at = :run")
        named = rows("SELECT id, billing_key, number FROM invoices WHERE org_id = :org")
        for inv in named:  # an invoice (also one drafted before the run) is named by what it bills
            key = inv["billing_key"] or inv["number"]
            names[inv["id"]] = ID.sub(lambda m: names.get(m.group(0), "?"), key)
        accounts = rows("SELECT id, code, currency FROM ledger_accounts WHERE org_id = :org")
        for acc in accounts:
            code = ID.sub(lambda m: names.get(m.group(0), "?"), acc["code"])
            names[acc["id"]] = f"{code}/{acc['currency']}"
        lines = rows(
            "SELECT l.*, l.event_ids IS NULL AS no_event_ids FROM invoice_lines l"
            " JOIN invoices i ON i.org_id = l.org_id AND i.id = l.invoice_id"
            " WHERE l.org_id = :org AND i.created_at = :run"
        )
        txs = rows("SELECT * FROM ledger_transactions WHERE org_id = :org AND created_at = :run")
        for t in txs:
            names[t["id"]] = ID.sub(lambda m: names.get(m.group(0), "?"), t["idempotency_key"])
        entries = rows(
            "SELECT e.* FROM ledger_entries e JOIN ledger_transactions t"
            " ON t.org_id = e.org_id AND t.id = e.transaction_id"
            " WHERE e.org_id = :org AND t.created_at = :run"
        )
        events = rows("SELECT type, data, occurred_at FROM domain_events WHERE org_id = :org"
                      " AND created_at = :run ORDER BY id")  # fmt: skip
        subs = rows("SELECT * FROM subscriptions WHERE org_id = :org")
        assert verify(session, org_id) == []
    wall = {"id", "org_id", "created_at", "updated_at"}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in wall}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            value = ID.sub(lambda m: names.get(m.group(0), "?"), value)
            return re.sub(r"^Bulk Billing GmbH$", "", value)
        return value

    def keyed(items: list[dict[str, Any]], *key: str) -> list[Any]:
        # rows whose keys read the same once ids are replaced by names would come in storage
        # order (which differs between the two organizations): ties are ordered by content
        return sorted(
            (clean(i) for i in items),
            key=lambda i: (tuple(str(i[k]) for k in key), repr(sorted(i.items()))),
        )

    return {
        "invoices": keyed(invoices, "billing_key", "number"),
        "lines": keyed(lines, "invoice_id", "position"),
        "transactions": keyed(txs, "idempotency_key"),
        "entries": keyed(entries, "transaction_id", "line"),
        "events": [clean(e) for e in events],
        "subscriptions": keyed(subs, "customer_id"),
    }


@pytest.mark.parametrize("grace", [0, 3600])
def test_bulk_billing_writes_what_the_per_subscription_path_writes(
    client: TestClient, rt: Runtime, grace: int
) -> None:
    clock = FrozenClock(NOW + timedelta(hours=2))  # past every period end and grace
    bulk_org, bulk_ids = build(client, rt, grace)
    one_org, one_ids = build(client, rt, grace)
    bulk = billing.run(rt.db, clock, org_id=bulk_org, chunk=5)
    one = billing.run(rt.db, clock, org_id=one_org, chunk=5, set_based=False)
    assert (bulk.transitions, bulk.invoices_created, bulk.invoices_finalized) == (
        one.transitions, one.invoices_created, one.invoices_finalized,
    )  # fmt: skip
    assert bulk.invoices_created >= 12
    got = snapshot(rt, bulk_org, bulk_ids, clock.now())
    want = snapshot(rt, one_org, one_ids, clock.now())
    for part in want:
        for n, (g, w) in enumerate(zip(got[part], want[part], strict=True)):
            assert g == w, (part, n, {k: (g[k], w.get(k)) for k in g if g[k] != w.get(k)})
    again = billing.run(rt.db, clock, org_id=bulk_org, chunk=5)
    assert (again.transitions, again.invoices_created) == (0, 0)
