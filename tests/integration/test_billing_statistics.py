"""A billing run bulk-loads invoices, lines, ledger rows and events; it ANALYZEs the tables
that outgrew their statistics (``kassa_analyze_grown``, migration 0008) so that its chunks
are planned from their real size, and the statements a chunk depends on find their rows
through the keys they are given."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from kassa.core.clock import FrozenClock
from kassa.db import bulk
from kassa.events import service as events
from kassa.invoicing import billing
from kassa.ledger.models import LedgerAccount
from kassa.runtime import Runtime
from tests.conftest import signup


def _analyzed(rt: Runtime, table: str) -> int:
    with rt.db.transaction() as session:
        return int(
            session.execute(
                text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = :t"),
                {"t": table},
            ).scalar_one()
        )


def test_a_grown_table_is_analyzed_once_by_the_application_role(
    client: TestClient, rt: Runtime
) -> None:
    tenant = signup(client)
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    billing.refresh_statistics(rt.db)  # whatever earlier tests left grown
    before = _analyzed(rt, "domain_events")
    with rt.db.transaction() as session:  # grown: more rows than it held when last analyzed
        held = session.execute(
            text("SELECT greatest(reltuples, 0) FROM pg_class WHERE relname = 'domain_events'")
        ).scalar_one()
    with rt.db.transaction(tenant.org_id) as session:
        events.record_many(
            session, clock, tenant.org_id,
            [("test.grown", {"n": n}, clock.now()) for n in range(int(held) + 3000)],
        )  # fmt: skip
        session.execute(text("SELECT pg_stat_force_next_flush()"))
    for _ in range(50):  # the counters reach the statistics views at the next flush (and
        # another table earlier tests grew may be the one analyzed first)
        billing.refresh_statistics(rt.db)
        if _analyzed(rt, "domain_events") > before:
            break
        time.sleep(0.1)
    assert _analyzed(rt, "domain_events") == before + 1
    assert billing.refresh_statistics(rt.db) == 0  # analyzed: nothing grown any more


def test_among_probes_the_index_with_the_values(rt: Runtime) -> None:
    """``column = ANY(ARRAY(…))``: an index condition, not a semi-join over the table."""
    with rt.db.transaction() as session:
        stmt = select(LedgerAccount.id).where(
            LedgerAccount.org_id == "org_x", bulk.among(LedgerAccount.code, ["a", "b"])
        )
        compiled = stmt.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))
    assert "Index Cond" in plan and "code)::text = ANY" in plan, plan
    assert "Semi Join" not in plan, plan


def test_ledger_lookups_probe_each_key_whatever_the_statistics(
    client: TestClient, rt: Runtime
) -> None:
    """A chunk's account and credit lookups probe the unique index once per code (migration
    0010 / ``ledger.service``): joined instead, with statistics saying "a handful of rows"
    they read every account of the organization, once more per chunk."""
    from kassa.core import jsoncodec
    from kassa.ledger import service as ledger

    tenant = signup(client)
    with rt.db.transaction(tenant.org_id) as session:  # an organization with many accounts
        session.execute(
            text(
                "INSERT INTO ledger_accounts (org_id, id, code, type, currency, created_at)"
                " SELECT :org, 'la_x' || g, 'revenue:plan-' || g, 'revenue', 'eur', now()"
                " FROM generate_series(1, 3000) AS g"
            ),
            {"org": tenant.org_id},
        )
    owner = create_engine(rt.db.urls.owner)
    try:
        with owner.begin() as conn:  # the statistics know them, whatever earlier tests left
            conn.execute(text("ANALYZE ledger_accounts"))
    finally:
        owner.dispose()
    codes = [f"customer_credit:cus_{n}" for n in range(300)]
    wanted = [
        {"code": c, "currency": "eur", "type": "liability", "customer_id": None, "id": f"la_{n}"}
        for n, c in enumerate(codes)
    ]
    plans = []
    with rt.db.transaction(tenant.org_id) as session:
        for stmt, params in (
            (ledger._CREDITS, {"org": tenant.org_id, "codes": jsoncodec.encode(codes)}),
            (ledger._ACCOUNTS, {"org": tenant.org_id, "now": datetime.now(UTC),
                                "wanted": jsoncodec.encode(wanted)}),
        ):  # fmt: skip
            explain = text(f"EXPLAIN {stmt.text}")
            plans.append("\n".join(r[0] for r in session.execute(explain, params)))
        session.rollback()
    for plan in plans:
        assert "Index Scan using uq_ledger_accounts_org_id_code_currency" in plan, plan
        assert "Materialize" not in plan and "Hash Join" not in plan, plan


def test_the_customers_on_a_test_clock_are_found_by_their_own_index(rt: Runtime) -> None:
    """A chunk skips the rows whose customer runs on a test clock: the check reads the
    partial index of such customers (migration 0011), never the organization's customers
    (before, every chunk read them all)."""
    from kassa.subscriptions.models import Subscription

    with rt.db.transaction() as session:
        stmt = select(Subscription.id).where(
            Subscription.org_id == "org_x",
            Subscription.next_action_at <= datetime(2026, 1, 1, tzinfo=UTC),
            ~billing._on_test_clock(Subscription),  # type: ignore[operator]
        )
        compiled = stmt.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))
    scans = [line for line in plan.splitlines() if " on customers" in line]
    assert scans, plan
    assert all("ix_customers_org_id_id_test_clock" in line for line in scans), plan


def test_a_chunks_usage_pairs_are_probed_through_the_index_under_row_security(
    client: TestClient, rt: Runtime
) -> None:
    """``metering._EVENTS`` compares the event columns with plain values: written
    as ``customer_id = p->>0``, the condition applies a function that is not leakproof, so
    row-level security holds it back until the policy has passed every row — a scan of all
    the organization's events for each pair. The organization has thousands of events
    (analyzed), so the plan does not depend on what earlier tests left in the statistics
    (with next to no rows known, a sequential scan is as good as any)."""
    from kassa.core import jsoncodec
    from kassa.metering import service as metering

    tenant = signup(client)
    with rt.db.transaction(tenant.org_id) as session:
        session.execute(
            text(
                "INSERT INTO usage_events (org_id, id, event_id, customer_id, meter_id,"
                " event_name, ts, value, properties, received_at, late)"
                " SELECT :org, 'evt_' || lpad(g::text, 26, '0'), 'e' || g, 'cus_' || (g % 100),"
                " 'mtr_a', 'calls', :lo + g * interval '1 minute', 1, '{}', :lo, false"
                " FROM generate_series(1, 5000) AS g"
            ),
            {"org": tenant.org_id, "lo": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    owner = create_engine(rt.db.urls.owner)
    try:
        with owner.begin() as conn:  # the statistics know the organization's events
            conn.execute(text("ANALYZE usage_events"))
    finally:
        owner.dispose()
    params = {
        "org": tenant.org_id, "pairs": jsoncodec.encode([["cus_a", "mtr_a"], ["cus_b", "mtr_b"]]),
        "lo": datetime(2026, 1, 1, tzinfo=UTC), "hi": datetime(2026, 2, 1, tzinfo=UTC),
    }  # fmt: skip
    with rt.db.transaction(tenant.org_id) as session:
        explain = text(f"EXPLAIN {metering._EVENTS}")
        plan = "\n".join(r[0] for r in session.execute(explain, params))
    assert "Index Scan using ix_usage_events_org_id_customer_id_meter_id_ts" in plan, plan
    assert "customer_id)::text = ((p.value ->> 0))" in plan, plan  # an index condition
    assert "Seq Scan on usage_events" not in plan, plan


def test_a_customers_events_are_found_by_their_own_index(client: TestClient, rt: Runtime) -> None:
    """Customer export and anonymization read a customer's events through the partial index
    of customer events (migration 0012), whose predicate the query spells as the index
    does: for an organization with thousands of events the planner probes it instead of
    reading them all. Billing's events (invoices, subscriptions) have no entry in it."""
    tenant = signup(client)
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    with rt.db.transaction(tenant.org_id) as session:
        events.record_many(
            session, clock, tenant.org_id,
            [("invoice.created", {"id": f"inv_{n}"}, clock.now()) for n in range(3000)],
        )  # fmt: skip
    owner = create_engine(rt.db.urls.owner)
    try:
        with owner.begin() as conn:  # the statistics know the organization's events
            conn.execute(text("ANALYZE domain_events"))
    finally:
        owner.dispose()
    stmt = events.customer_events(tenant.org_id, "cus_x")
    with rt.db.transaction(tenant.org_id) as session:
        compiled = stmt.compile(session.get_bind())  # (its parameters bound, as when it runs)
        explain = session.connection().exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
        plan = "\n".join(r[0] for r in explain)
        indexes = set(
            session.scalars(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'domain_events'")
            )
        )
    assert "ix_domain_events_org_id_object_id_customer" in plan, plan
    assert indexes == {"pk_domain_events", "ix_domain_events_org_id_object_id_customer"}
