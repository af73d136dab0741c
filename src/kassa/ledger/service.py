"""Recording money events and reading balances. Services never commit: the request or job
boundary owns the transaction; the database checks the balance at commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.ids import new_id
from kassa.ledger import postings as rules
from kassa.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction


def accounts_for(
    session: Session, org_id: str, codes: set[str], currency: str, customer_id: str | None,
    clock: Clock,
) -> dict[str, str]:  # fmt: skip
    """code → account id, creating missing accounts (race-free: ON CONFLICT DO NOTHING)."""
    found = _load(session, org_id, codes, currency)
    missing = codes - found.keys()
    if missing:
        session.execute(
            insert(LedgerAccount)
            .values(
                [
                    {
                        "org_id": org_id, "id": new_id("la"), "code": code,
                        "type": rules.account_type(code), "currency": currency,
                        "customer_id": customer_id if ":cus_" in code else None,
                        "created_at": clock.now(),
                    }
                    for code in sorted(missing)
                ]
            )
            .on_conflict_do_nothing(index_elements=["org_id", "code", "currency"])
        )  # fmt: skip
        found = _load(session, org_id, codes, currency)
    return found


def _load(session: Session, org_id: str, codes: set[str], currency: str) -> dict[str, str]:
    return {
        code: account_id
        for code, account_id in session.execute(
            select(LedgerAccount.code, LedgerAccount.id).where(
                LedgerAccount.org_id == org_id,
                LedgerAccount.currency == currency,
                LedgerAccount.code.in_(codes),
            )
        )
    }


def post(
    session: Session, org_id: str, *, kind: str, source_type: str, source_id: str, key: str,
    currency: str, occurred_at: datetime, postings: Sequence[rules.Posting],
    customer_id: str | None, clock: Clock,
) -> str | None:  # fmt: skip
    """Record one balanced transaction once: a second call with the same ``key`` records
    nothing and returns None. An all-zero transaction records nothing either."""
    rules.check_balanced(postings)
    rows = rules.entries(postings)
    if not rows:
        return None
    tx_id = new_id("ltx")
    inserted = session.execute(
        insert(LedgerTransaction)
        .values(
            org_id=org_id, id=tx_id, kind=kind, source_type=source_type, source_id=source_id,
            idempotency_key=key, currency=currency, occurred_at=occurred_at,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["org_id", "idempotency_key"])
        .returning(LedgerTransaction.id)
    ).scalar()  # fmt: skip
    if inserted is None:
        return None
    ids = accounts_for(session, org_id, {r[0] for r in rows}, currency, customer_id, clock)
    session.execute(
        insert(LedgerEntry),
        [
            {
                "org_id": org_id, "transaction_id": tx_id, "line": n, "account_id": ids[code],
                "debit": debit, "credit": credit, "currency": currency, "invoice_id": invoice,
                "occurred_at": occurred_at,
            }
            for n, (code, debit, credit, invoice) in enumerate(rows, start=1)
        ],
    )  # fmt: skip
    return tx_id


def invoice_receivable(session: Session, org_id: str, invoice_id: str) -> int:
    """What the ledger says is still owed on an invoice."""
    debit, credit = session.execute(
        select(
            func.coalesce(func.sum(LedgerEntry.debit), 0),
            func.coalesce(func.sum(LedgerEntry.credit), 0),
        ).where(LedgerEntry.org_id == org_id, LedgerEntry.invoice_id == invoice_id)
    ).one()
    return int(debit) - int(credit)


def account_balances(
    session: Session, org_id: str, *, customer_id: str | None = None
) -> list[tuple[LedgerAccount, int, int]]:
    """(account, total debit, total credit) for every account (of one customer)."""
    stmt = (
        select(
            LedgerAccount,
            func.coalesce(func.sum(LedgerEntry.debit), 0),
            func.coalesce(func.sum(LedgerEntry.credit), 0),
        )
        .outerjoin(
            LedgerEntry,
            (LedgerEntry.org_id == LedgerAccount.org_id)
            & (LedgerEntry.account_id == LedgerAccount.id),
        )
        .where(LedgerAccount.org_id == org_id)
        .group_by(LedgerAccount.org_id, LedgerAccount.id)
        .order_by(LedgerAccount.code, LedgerAccount.currency)
    )
    if customer_id is not None:
        stmt = stmt.where(LedgerAccount.customer_id == customer_id)
    return [(a, int(d), int(c)) for a, d, c in session.execute(stmt)]


def customer_credit(session: Session, org_id: str, customer_id: str, currency: str) -> int:
    """The customer's unused credit in ``currency`` (a liability: credit minus debit). The
    account first (unique index), then its entries (index on account): no scan of the org's
    ledger, which grows with every invoice."""
    account_id = session.scalar(
        select(LedgerAccount.id).where(
            LedgerAccount.org_id == org_id,
            LedgerAccount.code == rules.customer_credit(customer_id),
            LedgerAccount.currency == currency,
        )
    )
    if account_id is None:
        return 0
    debit, credit = session.execute(
        select(
            func.coalesce(func.sum(LedgerEntry.debit), 0),
            func.coalesce(func.sum(LedgerEntry.credit), 0),
        ).where(LedgerEntry.org_id == org_id, LedgerEntry.account_id == account_id)
    ).one()
    return int(credit) - int(debit)
