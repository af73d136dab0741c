"""Invoices through the API: issuing at billing points, drafts and finalization, numbering,
settlement, credit notes, documents, the ledger's agreement."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from kassa.runtime import Runtime
from tests.conftest import Tenant, create, make_customer, make_plan, make_subscription


def invoices(client: TestClient, tenant: Tenant, **query: str) -> list[dict[str, Any]]:
    r = client.get("/v1/invoices", params=query, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def post(client: TestClient, tenant: Tenant, path: str, body: Any = None) -> dict[str, Any]:
    r = client.post(path, json=body, headers=tenant.headers)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def receivable(client: TestClient, tenant: Tenant, customer: str) -> dict[str, int]:
    r = client.get(f"/v1/customers/{customer}/balance", headers=tenant.headers)
    assert r.status_code == 200, r.text
    return {row["currency"]: row["balance"] for row in r.json()["balances"]}


def one_off(
    client: TestClient, tenant: Tenant, customer: str, amount: int, **extra: Any
) -> dict[str, Any]:
    body = {"customer": customer, "lines": [{"description": "Work", "unit_amount": amount}]}
    return create(client, tenant, "/v1/invoices", body | extra)


def test_advance_plan_issues_a_draft_at_start_then_finalizes_with_a_number(
    client: TestClient, tenant: Tenant
) -> None:
    sub = make_subscription(client, tenant, plan=make_plan(client, tenant, amount=60000)["id"])
    (draft,) = invoices(client, tenant, subscription=sub["id"])
    assert draft["status"] == "draft" and draft["number"] is None
    assert draft["total"] == 60000 and draft["lines"][0]["kind"] == "fixed"
    final = post(client, tenant, f"/v1/invoices/{draft['id']}/finalize")
    assert final["status"] == "open" and final["number"].endswith("-000001")
    assert final["amount_due"] == 60000 and final["due_at"] is not None
    assert receivable(client, tenant, sub["customer"]) == {"eur": 60000}
    again = client.post(f"/v1/invoices/{draft['id']}/finalize", headers=tenant.headers)
    assert again.status_code == 409


def test_zero_total_invoice_is_paid_at_once_and_coupon_consumed(
    client: TestClient, tenant: Tenant
) -> None:
    create(client, tenant, "/v1/coupons",
           {"code": "BIG", "amount_off": 50000, "currency": "eur", "duration": "once"})  # fmt: skip
    sub = make_subscription(
        client, tenant, plan=make_plan(client, tenant, amount=900)["id"], coupon="BIG"
    )
    (draft,) = invoices(client, tenant, subscription=sub["id"])
    assert (draft["discount"], draft["total"]) == (900, 0)
    final = post(client, tenant, f"/v1/invoices/{draft['id']}/finalize")
    assert final["status"] == "paid" and final["amount_due"] == 0
    upcoming = client.get(
        f"/v1/subscriptions/{sub['id']}/upcoming_invoice", headers=tenant.headers
    ).json()
    assert upcoming["discount"] == 0  # a "once" coupon was used by the first invoice


def test_pay_void_uncollectible_and_the_ledger_agrees(client: TestClient, tenant: Tenant) -> None:
    cus = make_customer(client, tenant)["id"]
    a = one_off(client, tenant, cus, 10000, auto_finalize=True)
    b = one_off(client, tenant, cus, 2500, auto_finalize=True)
    c = one_off(client, tenant, cus, 700, auto_finalize=True)
    assert [x["status"] for x in (a, b, c)] == ["open"] * 3
    numbers = sorted(int(x["number"].rsplit("-", 1)[1]) for x in (a, b, c))
    assert numbers == [1, 2, 3]
    paid = post(client, tenant, f"/v1/invoices/{a['id']}/pay", {"amount": 4000})
    assert (paid["status"], paid["amount_due"], paid["amount_paid"]) == ("open", 6000, 4000)
    paid = post(client, tenant, f"/v1/invoices/{a['id']}/pay", {})
    assert (paid["status"], paid["amount_due"]) == ("paid", 0)
    voided = post(client, tenant, f"/v1/invoices/{b['id']}/void")
    assert (voided["status"], voided["amount_due"]) == ("void", 0)
    lost = post(client, tenant, f"/v1/invoices/{c['id']}/mark_uncollectible")
    assert (lost["status"], lost["amount_written_off"]) == ("uncollectible", 700)
    assert receivable(client, tenant, cus) == {"eur": 0}
    assert client.post(f"/v1/invoices/{b['id']}/void", headers=tenant.headers).status_code == 409
    tb = client.get("/v1/ledger/trial_balance.csv", headers=tenant.headers).text
    total = [row for row in tb.splitlines() if row.startswith("TOTAL")]
    assert total and all(r.split(",")[3] == r.split(",")[4] for r in total)


def test_credit_notes_reduce_due_or_become_credit_the_next_invoice_uses(
    client: TestClient, tenant: Tenant
) -> None:
    cus = make_customer(client, tenant)["id"]
    inv = one_off(client, tenant, cus, 10000, auto_finalize=True)
    note = post(client, tenant, "/v1/credit_notes", {"invoice": inv["id"], "amount": 3000})
    assert (note["to_invoice"], note["to_credit"], note["total"]) == (3000, 0, 3000)
    after = client.get(f"/v1/invoices/{inv['id']}", headers=tenant.headers).json()
    assert after["amount_due"] == 7000 and after["amount_credited"] == 3000
    post(client, tenant, f"/v1/invoices/{inv['id']}/pay", {})
    line = after["lines"][0]["id"]
    body = {"invoice": inv["id"], "lines": [{"line": line, "amount": 2000}]}
    note = post(client, tenant, "/v1/credit_notes", body)
    assert (note["to_invoice"], note["to_credit"]) == (0, 2000)
    over = client.post("/v1/credit_notes", json={"invoice": inv["id"], "amount": 5001},
                       headers=tenant.headers)  # fmt: skip
    assert over.status_code == 422 and over.json()["errors"][0]["field"] == "amount"
    assert receivable(client, tenant, cus) == {"eur": -2000}
    nxt = one_off(client, tenant, cus, 1500, auto_finalize=True)
    assert (nxt["credit_applied"], nxt["amount_due"], nxt["status"]) == (1500, 0, "paid")
    nxt = one_off(client, tenant, cus, 1500, auto_finalize=True)
    assert (nxt["credit_applied"], nxt["amount_due"]) == (500, 1000)
    assert receivable(client, tenant, cus) == {"eur": 1000}


@pytest.mark.parametrize(
    ("currency", "unit_amount", "total_text"), [("jpy", 1200, "1,200"), ("bhd", 1250, "1.250")]
)
def test_zero_and_three_decimal_currencies(
    client: TestClient, tenant: Tenant, currency: str, unit_amount: int, total_text: str
) -> None:
    cus = make_customer(client, tenant, currency=currency)["id"]
    inv = one_off(client, tenant, cus, unit_amount, auto_finalize=True, currency=currency)
    assert inv["currency"] == currency and inv["total"] == unit_amount
    pdf = client.get(f"/v1/invoices/{inv['id']}/pdf", headers=tenant.headers)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    content = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert inv["number"] in content and total_text in content


def test_finalized_rows_are_immutable_in_the_database(
    client: TestClient, tenant: Tenant, rt: Runtime
) -> None:
    cus = make_customer(client, tenant)["id"]
    inv = one_off(client, tenant, cus, 999, auto_finalize=True)
    statements = [
        "UPDATE ledger_entries SET debit = debit + 1 WHERE org_id = :org",
        "DELETE FROM ledger_transactions WHERE org_id = :org",
        "UPDATE invoices SET total = 1 WHERE org_id = :org AND id = :inv",
        "UPDATE invoice_lines SET amount = 1 WHERE org_id = :org AND invoice_id = :inv",
    ]
    for sql in statements:
        with pytest.raises(DBAPIError), rt.db.transaction(tenant.org_id) as session:
            session.execute(text(sql), {"org": tenant.org_id, "inv": inv["id"]})
    with (
        pytest.raises(DBAPIError, match="does not balance"),
        rt.db.transaction(tenant.org_id) as session,
    ):
        session.execute(
            text(
                "INSERT INTO ledger_entries (org_id, transaction_id, line, account_id, debit,"
                " credit, currency, occurred_at) SELECT org_id, transaction_id, 99, account_id,"
                " 5, 0, currency, occurred_at FROM ledger_entries WHERE org_id = :org LIMIT 1"
            ),
            {"org": tenant.org_id},
        )

    # a line added to a finalized invoice is refused (committed by another transaction) ...
    add_line = (
        "INSERT INTO invoice_lines (org_id, id, invoice_id, position, kind, description,"
        " quantity, amount, revenue_account) VALUES (:org, :line, :inv, 9, 'one_off', 'x', 1,"
        " 1, 'revenue:one_off')"
    )
    with (
        pytest.raises(DBAPIError, match="finalized invoice"),
        rt.db.transaction(tenant.org_id) as session,
    ):
        session.execute(text(add_line), {"org": tenant.org_id, "inv": inv["id"], "line": "il_x"})
    # ... but an invoice inserted final gets its lines in the transaction that inserts it
    # (a billing run's invoices, migration 0010); nobody sees it before it is complete
    with rt.db.transaction(tenant.org_id) as session:
        session.execute(
            text(
                "INSERT INTO invoices SELECT (jsonb_populate_record(i, jsonb_build_object("
                "'id', 'inv_own', 'number', 'OWN-1', 'sequence', -1))).* FROM invoices i"
                " WHERE org_id = :org AND id = :inv"
            ),
            {"org": tenant.org_id, "inv": inv["id"]},
        )
        session.execute(text(add_line), {"org": tenant.org_id, "inv": "inv_own", "line": "il_y"})
    with pytest.raises(DBAPIError), rt.db.transaction(tenant.org_id) as session:
        session.execute(text("DELETE FROM invoice_lines WHERE org_id = :org AND id = 'il_y'"),
                        {"org": tenant.org_id})  # fmt: skip


@pytest.mark.parametrize("sequence", [1, 42, 999_999, 1_000_000, 12_345_678])
def test_document_numbers_read_alike_in_python_and_sql(rt: Runtime, sequence: int) -> None:
    from kassa.invoicing.service import document_number

    with rt.db.transaction() as session:
        in_sql = session.execute(
            text("SELECT kassa_document_number('ACME-CN', :n)"), {"n": sequence}
        ).scalar_one()
    assert in_sql == document_number("ACME-CN", sequence)


def test_a_ledger_transaction_is_written_with_its_entries_or_not_at_all(
    client: TestClient, tenant: Tenant, rt: Runtime
) -> None:
    """Checked when the statement ends (migration 0010), not deferred to the commit."""
    with (
        pytest.raises(DBAPIError, match="has 0 entries"),
        rt.db.transaction(tenant.org_id) as session,
    ):
        session.execute(
            text(
                "INSERT INTO ledger_transactions (org_id, id, kind, source_type, source_id,"
                " idempotency_key, currency, occurred_at, created_at) VALUES (:org, 'ltx_x',"
                " 'manual', 'test', 'x', 'k', 'eur', now(), now())"
            ),
            {"org": tenant.org_id},
        )
