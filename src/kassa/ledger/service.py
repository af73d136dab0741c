"""Recording money events and reading balances. Services never commit: the request or job
boundary owns the transaction. A transaction and its entries are written by one statement,
and the database checks them when it ends (at least two entries, balanced per currency:
migrations 0006 and 0010)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from kassa.core import jsoncodec
from kassa.core.clock import Clock
from kassa.core.ids import new_ids
from kassa.db import bulk
from kassa.ledger import postings as rules
from kassa.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction

# the columns each row carries (``org_id``, and a transaction's ``created_at``, are the
# same in every row of a statement: bound once)
_TX_COLUMNS = (
    "id", "kind", "source_type", "source_id", "idempotency_key", "currency", "occurred_at",
)  # fmt: skip
_ENTRY_COLUMNS = (
    "transaction_id", "line", "account_id", "debit", "credit", "currency", "invoice_id",
    "occurred_at",
)  # fmt: skip
_TXS = cast(Table, LedgerTransaction.__table__)
_ENTRIES = cast(Table, LedgerEntry.__table__)


def post(
    session: Session, org_id: str, *, kind: str, source_type: str, source_id: str, key: str,
    currency: str, occurred_at: datetime, postings: Sequence[rules.Posting],
    customer_id: str | None, clock: Clock,
) -> str | None:  # fmt: skip
    """Record one balanced transaction once: a second call with the same ``key`` records
    nothing and returns None. An all-zero transaction records nothing either."""
    tx = NewTransaction(kind, source_type, source_id, key, currency, occurred_at, postings,
                        customer_id)  # fmt: skip
    return post_many(session, org_id, [tx], clock)[0]


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
    session: Session, org_id: str, txs: Sequence[NewTransaction], clock: Clock, *,
    new: bool = False,
) -> list[str | None]:  # fmt: skip
    """``post`` for many transactions in a few statements (a billing chunk): each is
    recorded once (by key); returns each one's id, None where nothing was recorded.

    ``new``: the caller knows that none of them is recorded yet (their sources are this
    database transaction's own, e.g. invoices it finalizes): a plain INSERT, without a
    lookup per key to skip; one recorded after all fails the statement on the key."""
    todo = []
    for tx in txs:
        rules.check_balanced(tx.postings)
        rows = rules.entries(tx.postings)
        if rows:
            todo.append((tx, rows))
    if not todo:
        return [None] * len(txs)
    tx_ids = dict(zip((tx.key for tx, _ in todo), new_ids("ltx", len(todo)), strict=True))
    owners = {
        (code, tx.currency): _owner(code, tx.customer_id) for tx, rows in todo for code, *_ in rows
    }
    ids = _accounts(session, org_id, owners, clock)
    staged_txs = bulk.stage(
        _TXS, _TX_COLUMNS,
        [(tx_ids[tx.key], tx.kind, tx.source_type, tx.source_id, tx.key, tx.currency,
          tx.occurred_at) for tx, _ in todo],
        consts={"org_id": org_id, "created_at": clock.now()},
    )  # fmt: skip
    staged_entries = bulk.stage(
        _ENTRIES, _ENTRY_COLUMNS,
        [(tx_ids[tx.key], n, ids[(code, tx.currency)], debit, credit, tx.currency, invoice,
          tx.occurred_at)
         for tx, rows in todo
         for n, (code, debit, credit, invoice) in enumerate(rows, start=1)],
        consts={"org_id": org_id},
    )  # fmt: skip
    tx_cols, entry_cols = ", ".join(staged_txs.columns), ", ".join(staged_entries.columns)
    if new:
        skip, recorded = "", ""
    else:
        skip = " ON CONFLICT (org_id, idempotency_key) DO NOTHING"
        recorded = " WHERE s.transaction_id IN (SELECT id FROM t)"
    inserted = set(
        session.scalars(
            text(
                f"WITH t AS (INSERT INTO ledger_transactions ({tx_cols}) SELECT {tx_cols}"  # noqa: S608
                f" FROM {staged_txs.source()}{skip} RETURNING id),"
                f" e AS (INSERT INTO ledger_entries ({entry_cols}) SELECT {entry_cols}"
                f" FROM {staged_entries.source()}{recorded})"
                " SELECT id FROM t"
            ),
            {**staged_txs.params, **staged_entries.params},
        )
    )  # fmt: skip
    return [tx_ids[tx.key] if tx_ids.get(tx.key) in inserted else None for tx in txs]


def _owner(code: str, customer_id: str | None) -> str | None:
    return customer_id if ":cus_" in code else None


def _accounts(
    session: Session, org_id: str, owners: Mapping[tuple[str, str], str | None], clock: Clock
) -> dict[tuple[str, str], str]:
    """(code, currency) → account id for each account of ``owners`` ((code, currency) →
    the customer it belongs to), creating the missing ones in the same statement (race
    free: ON CONFLICT DO NOTHING, and an account another transaction created meanwhile is
    read again)."""
    wanted = sorted(owners)
    rows = [
        {"code": code, "currency": currency, "type": rules.account_type(code),
         "customer_id": owners[(code, currency)], "id": account_id}
        for (code, currency), account_id in zip(wanted, new_ids("la", len(wanted)), strict=True)
    ]  # fmt: skip
    params = {"org": org_id, "now": clock.now(), "wanted": jsoncodec.encode(rows)}
    found = {(code, currency): account_id for code, currency, account_id in session.execute(
        _ACCOUNTS, params)}  # fmt: skip
    if len(found) < len(wanted):  # created by a concurrent transaction after this one began
        found = {(code, currency): account_id for code, currency, account_id in session.execute(
            _ACCOUNTS, params)}  # fmt: skip
    return found


# Lookups by key are probes, one per key (a LATERAL subquery behind OFFSET 0, which the
# planner cannot turn into a join): joined, they were planned from the tables' statistics,
# and while those said "a handful of rows" (the first chunks of a billing run) every
# chunk read all of the organization's accounts or entries, a chunk more each time.
_ACCOUNTS = text(
    "WITH w AS (SELECT * FROM jsonb_to_recordset(CAST(:wanted AS jsonb)) AS w(code text,"
    " currency text, type text, customer_id text, id text)),"
    " old AS (SELECT w.code, w.currency, a.id FROM w CROSS JOIN LATERAL (SELECT a.id"
    " FROM ledger_accounts a WHERE a.org_id = :org AND a.code = w.code"
    " AND a.currency = w.currency OFFSET 0) a),"
    " new AS (INSERT INTO ledger_accounts (org_id, id, code, type, currency, customer_id,"
    " created_at) SELECT :org, w.id, w.code, w.type, w.currency, w.customer_id, :now FROM w"
    " WHERE NOT EXISTS (SELECT 1 FROM old WHERE old.code = w.code"
    " AND old.currency = w.currency)"
    " ON CONFLICT (org_id, code, currency) DO NOTHING RETURNING code, currency, id)"
    " SELECT code, currency, id FROM old UNION ALL SELECT code, currency, id FROM new"
)
_CREDITS = text(
    "SELECT a.customer_id, a.currency, s.balance"
    " FROM jsonb_array_elements_text(CAST(:codes AS jsonb)) AS c(code)"
    " CROSS JOIN LATERAL (SELECT a.id, a.customer_id, a.currency FROM ledger_accounts a"
    " WHERE a.org_id = :org AND a.code = c.code OFFSET 0) a"
    " CROSS JOIN LATERAL (SELECT coalesce(sum(e.credit), 0) - coalesce(sum(e.debit), 0)"
    " AS balance FROM ledger_entries e WHERE e.org_id = :org AND e.account_id = a.id) s"
)


def customer_credits(
    session: Session, org_id: str, customer_ids: Sequence[str]
) -> dict[tuple[str, str], int]:
    """(customer, currency) → unused credit, for the customers that have any (nonzero)."""
    codes = [rules.customer_credit(c) for c in customer_ids]
    if not codes:
        return {}
    rows = session.execute(_CREDITS, {"org": org_id, "codes": jsoncodec.encode(codes)})
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
