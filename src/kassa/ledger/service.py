"""Recording money events and reading balances. Services never commit: the request or job
boundary owns the transaction; the database checks the balance at commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kassa.core.clock import Clock
from kassa.core.ids import new_id, new_ids
from kassa.db import bulk
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
                bulk.among(LedgerAccount.code, codes),
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
    session.execute(  # one statement: the database checks the balance per statement
        insert(LedgerEntry).values(
            [
                {
                    "org_id": org_id, "transaction_id": tx_id, "line": n,
                    "account_id": ids[code], "debit": debit, "credit": credit,
                    "currency": currency, "invoice_id": invoice, "occurred_at": occurred_at,
                }
                for n, (code, debit, credit, invoice) in enumerate(rows, start=1)
            ]
        )
    )  # fmt: skip
    return tx_id


@dataclass(frozen=True)
class NewTransaction:
    """One money event for ``post_many`` (the arguments of ``post``)."""

    kind: str
    source_type: str
    source_id: str
    key: str
    currency: str
    occurred_at: datetime
    postings: Sequence[rules.Posting]
    customer_id: str | None


def post_many(
    session: Session, org_id: str, txs: Sequence[NewTransaction], clock: Clock
) -> list[str | None]:
    """``post`` for many transactions in a handful of statements (a billing chunk): each is
    recorded once (by key); returns each one's id, None where nothing was recorded."""
    pending = []
    for tx in txs:
        rules.check_balanced(tx.postings)
        pending.append(rules.entries(tx.postings))
    todo = [(tx, rows) for tx, rows in zip(txs, pending, strict=True) if rows]
    tx_ids = dict(zip((tx.key for tx, _ in todo), new_ids("ltx", len(todo)), strict=True))
    now = clock.now()
    inserted = set(
        bulk.insert(
            session, LedgerTransaction.__table__,  # type: ignore[arg-type]
            ("org_id", "id", "kind", "source_type", "source_id", "idempotency_key", "currency",
             "occurred_at", "created_at"),
            [(org_id, tx_ids[tx.key], tx.kind, tx.source_type, tx.source_id, tx.key,
              tx.currency, tx.occurred_at, now) for tx, _ in todo],
            conflict="(org_id, idempotency_key) DO NOTHING", returning="id",
        )
    )  # fmt: skip
    todo = [(tx, rows) for tx, rows in todo if tx_ids[tx.key] in inserted]
    needed: dict[str, set[str]] = {}
    owners: dict[tuple[str, str], str | None] = {}
    for tx, rows in todo:
        for code, *_ in rows:
            needed.setdefault(tx.currency, set()).add(code)
            owners[(code, tx.currency)] = tx.customer_id if ":cus_" in code else None
    ids = _accounts_many(session, org_id, needed, owners, clock)
    bulk.insert(
        session, LedgerEntry.__table__,  # type: ignore[arg-type]
        ("org_id", "transaction_id", "line", "account_id", "debit", "credit", "currency",
         "invoice_id", "occurred_at"),
        [(org_id, tx_ids[tx.key], n, ids[(code, tx.currency)], debit, credit, tx.currency,
          invoice, tx.occurred_at)
         for tx, rows in todo
         for n, (code, debit, credit, invoice) in enumerate(rows, start=1)],
    )  # fmt: skip
    return [tx_ids[tx.key] if tx_ids.get(tx.key) in inserted else None for tx in txs]


def check_now(session: Session) -> None:
    """Run the deferred checks of the transactions written so far now rather than at
    commit (each has entries; ``ledger_transactions_balanced``, migration 0006), then defer
    again: a billing chunk clears them before it takes its numbers, so the number counter
    is not held locked while they run."""
    session.execute(text("SET CONSTRAINTS ledger_transactions_balanced IMMEDIATE"))
    session.execute(text("SET CONSTRAINTS ledger_transactions_balanced DEFERRED"))


def _accounts_many(
    session: Session, org_id: str, needed: dict[str, set[str]],
    owners: dict[tuple[str, str], str | None], clock: Clock,
) -> dict[tuple[str, str], str]:  # fmt: skip
    """(code, currency) → account id for every needed account, creating missing ones."""

    def load() -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for currency, codes in needed.items():
            found.update(
                ((code, currency), account_id)
                for code, account_id in _load(session, org_id, codes, currency).items()
            )
        return found

    found = load()
    missing = sorted(key for key in owners if key not in found)
    if missing:
        now = clock.now()
        bulk.insert(
            session, LedgerAccount.__table__,  # type: ignore[arg-type]
            ("org_id", "id", "code", "type", "currency", "customer_id", "created_at"),
            [(org_id, account_id, code, rules.account_type(code), currency,
              owners[(code, currency)], now)
             for account_id, (code, currency) in zip(new_ids("la", len(missing)), missing,
                                                     strict=True)],
            conflict="(org_id, code, currency) DO NOTHING",
        )  # fmt: skip
        found = load()
    return found


def customer_credits(
    session: Session, org_id: str, customer_ids: Sequence[str]
) -> dict[tuple[str, str], int]:
    """(customer, currency) → unused credit, for the customers that have any (nonzero)."""
    codes = [rules.customer_credit(c) for c in customer_ids]
    if not codes:
        return {}
    rows = session.execute(
        select(
            LedgerAccount.customer_id, LedgerAccount.currency,
            func.coalesce(func.sum(LedgerEntry.credit), 0)
            - func.coalesce(func.sum(LedgerEntry.debit), 0),
        )
        .join(
            LedgerEntry,
            (LedgerEntry.org_id == LedgerAccount.org_id)
            & (LedgerEntry.account_id == LedgerAccount.id),
        )
        .where(LedgerAccount.org_id == org_id, bulk.among(LedgerAccount.code, codes))
        .group_by(LedgerAccount.customer_id, LedgerAccount.currency)
    )  # fmt: skip
    return {(str(cus), cur): int(amount) for cus, cur, amount in rows if amount}


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
