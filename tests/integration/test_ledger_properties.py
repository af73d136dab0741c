"""Hypothesis: any sequence of invoices, credit notes, payments, refunds, voids and
write-offs keeps the ledger balanced, every invoice's amount due equal to its receivable in
the ledger, and the customer's balance equal to what is due minus their credit."""

from __future__ import annotations

from decimal import Decimal

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kassa.core.errors import KassaError
from kassa.invoicing import credit_notes, statements
from kassa.invoicing import service as invoicing
from kassa.invoicing.schemas import CreditNoteIn
from kassa.ledger import service as ledger
from kassa.ledger.verify import verify
from kassa.runtime import Runtime
from tests.conftest import Tenant, make_customer

fraction = st.integers(min_value=1, max_value=100)
operation = st.one_of(
    st.tuples(st.just("invoice"), st.integers(min_value=-5000, max_value=100_000)),
    st.tuples(st.sampled_from(["credit", "pay", "refund"]), st.integers(0, 9), fraction),
    st.tuples(st.sampled_from(["void", "uncollectible", "finalize"]), st.integers(0, 9)),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=12))
def test_any_sequence_keeps_the_ledger_sound(
    client: TestClient, tenant: Tenant, rt: Runtime, ops: list[tuple[object, ...]]
) -> None:
    org = tenant.org_id
    customer = make_customer(client, tenant)["id"]
    ids: list[str] = []
    clock = rt.clock
    for n, op in enumerate(ops):
        try:
            with rt.db.transaction(org) as session:
                now = clock.now()
                kind = op[0]
                if kind == "invoice":
                    amount = int(op[1])  # type: ignore[call-overload]
                    invoice = invoicing.create_one_off(
                        session, org, customer, "eur", [("Item", Decimal(1), Decimal(amount))],
                        None, now, clock, locale=None, metadata=None,
                        auto_finalize=amount % 3 != 0,  # some stay drafts
                    )  # fmt: skip
                    ids.append(invoice.id)
                    continue
                if not ids:
                    continue
                invoice = invoicing.load(session, org, ids[int(op[1]) % len(ids)], lock=True)  # type: ignore[call-overload]
                share = int(op[2]) if len(op) > 2 else 100  # type: ignore[call-overload]
                if kind == "credit":
                    left = invoice.total - sum(
                        c.total for c in credit_notes.of_invoice(session, invoice)
                    )
                    amount = max(1, left * share // 100)
                    credit_notes.create(
                        session, org, CreditNoteIn(invoice=invoice.id, amount=amount), now, clock
                    )
                elif kind == "pay":
                    amount = max(1, invoice.amount_due * share // 100)
                    invoicing.record_payment(
                        session, invoice, amount, "psp_clearing", f"p{n}-{invoice.id}", now, clock
                    )
                elif kind == "refund":
                    refundable = invoice.amount_paid - invoice.amount_refunded
                    amount = max(1, refundable * share // 100)
                    invoicing.record_refund(
                        session, invoice, amount, "psp_clearing", f"r{n}-{invoice.id}", now, clock
                    )
                elif kind == "void":
                    invoicing.void(session, invoice, now, clock)
                elif kind == "uncollectible":
                    invoicing.mark_uncollectible(session, invoice, now, clock)
                else:
                    invoicing.finalize(session, invoice, now, clock)
        except KassaError:
            pass  # refused (wrong state, too much): the transaction rolled back, nothing moved
        with rt.db.transaction(org) as session:
            assert verify(session, org) == []
            due = 0
            for invoice_id in ids:
                invoice = invoicing.load(session, org, invoice_id)
                if invoice.status == "draft":
                    assert ledger.invoice_receivable(session, org, invoice_id) == 0
                    continue
                assert invoice.amount_due == ledger.invoice_receivable(session, org, invoice_id)
                due += invoice.amount_due
            credit = ledger.customer_credit(session, org, customer, "eur")
            assert credit >= 0
            balance = statements.balance(session, org, customer).balances
            net = balance[0].balance if balance else 0
            assert net == due - credit
