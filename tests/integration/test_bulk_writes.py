"""Set-based writes (``db.bulk``): rows staged as one JSON parameter, the columns every row
shares bound once; ledger postings of sources known to be new inserted without the
per-key lookup, and refused (not skipped) if one was recorded after all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from sqlalchemy import Table, select, text
from sqlalchemy.exc import IntegrityError

from kassa.core.clock import FrozenClock
from kassa.db import bulk
from kassa.events import service as events
from kassa.events.models import DomainEvent
from kassa.invoicing.models import Invoice
from kassa.ledger import postings
from kassa.ledger import service as ledger
from kassa.runtime import Runtime
from tests.conftest import signup

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_shared_columns_are_bound_once_and_stored_in_every_row(
    client: TestClient, rt: Runtime
) -> None:
    tenant = signup(client)
    clock = FrozenClock(NOW)
    happened = [
        ("invoice.created", {"id": f"inv_{n}", "total": n}, NOW - timedelta(hours=n))
        for n in range(3)
    ]
    staged = events.stage(clock, tenant.org_id, happened)
    rows_json = staged.params[f"rows_{DomainEvent.__tablename__}"]
    assert tenant.org_id not in rows_json  # bound once, not repeated in the rows
    with rt.db.transaction(tenant.org_id) as session:
        bulk.insert_staged(session, staged)
    with rt.db.transaction(tenant.org_id) as session:
        stored = session.execute(
            select(DomainEvent.org_id, DomainEvent.object_id, DomainEvent.data,
                   DomainEvent.occurred_at, DomainEvent.created_at)
            .where(DomainEvent.org_id == tenant.org_id, DomainEvent.type == "invoice.created")
            .order_by(DomainEvent.id)
        ).all()  # fmt: skip
    assert [tuple(r) for r in stored] == [
        (tenant.org_id, data["id"], data, at, NOW) for _, data, at in happened
    ]


@pytest.mark.parametrize(
    ("shared", "is_null", "as_text"),
    [
        (None, True, None),
        (Jsonb(None), False, "null"),
        ({"name": "Acme"}, False, '{"name": "Acme"}'),
    ],
)
def test_a_shared_nullable_json_column_keeps_sql_null_apart_from_json_null(
    rt: Runtime, shared: Any, is_null: bool, as_text: str | None
) -> None:
    table: Table = Invoice.__table__  # type: ignore[assignment]
    staged = bulk.stage(table, ["id"], [("inv_a",), ("inv_b",)], consts={"seller": shared})
    with rt.db.transaction() as session:
        got = session.execute(
            text(f"SELECT s.id, s.seller IS NULL, CAST(s.seller AS text) FROM {staged.source()}"),
            staged.params,
        ).all()
    assert [tuple(r) for r in got] == [("inv_a", is_null, as_text), ("inv_b", is_null, as_text)]


def _sale(invoice_id: str, amount: int) -> ledger.NewTransaction:
    return ledger.NewTransaction(
        kind="invoice_finalized", source_type="invoice", source_id=invoice_id,
        key=f"invoice_finalized:{invoice_id}", currency="eur", occurred_at=NOW,
        postings=postings.invoice_finalized(
            "cus_bulk", invoice_id, [postings.SaleLine("revenue:bulk", amount)], []
        ),
        customer_id="cus_bulk",
    )  # fmt: skip


def test_new_postings_are_recorded_and_a_recorded_key_is_refused_not_skipped(
    client: TestClient, rt: Runtime
) -> None:
    tenant = signup(client)
    clock = FrozenClock(NOW)
    with rt.db.transaction(tenant.org_id) as session:
        ids = ledger.post_many(
            session, tenant.org_id, [_sale("inv_1", 500), _sale("inv_2", 700)], clock, new=True
        )
    assert all(ids) and len(set(ids)) == 2
    with rt.db.transaction(tenant.org_id) as session:  # the lookup path skips a recorded key
        again = ledger.post_many(
            session, tenant.org_id, [_sale("inv_2", 700), _sale("inv_3", 900)], clock
        )
    assert again[0] is None and again[1] is not None
    with pytest.raises(IntegrityError), rt.db.transaction(tenant.org_id) as session:
        ledger.post_many(session, tenant.org_id, [_sale("inv_3", 900)], clock, new=True)
    with rt.db.transaction(tenant.org_id) as session:
        counted = session.execute(
            text(
                "SELECT count(*), count(DISTINCT t.id), sum(e.debit), sum(e.credit)"
                " FROM ledger_transactions t JOIN ledger_entries e"
                " ON e.org_id = t.org_id AND e.transaction_id = t.id WHERE t.org_id = :org"
            ),
            {"org": tenant.org_id},
        ).one()
    assert tuple(counted) == (6, 3, 2100, 2100)  # three sales of two entries, once each
