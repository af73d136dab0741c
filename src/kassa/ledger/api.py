"""Routes: /v1/ledger (accounts with balances, transactions, CSV export, trial balance)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.core.context import Principal
from kassa.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, paginate
from kassa.core.schemas import problem_responses
from kassa.identity.auth import READ, db
from kassa.ledger import postings
from kassa.ledger import service as ledger
from kassa.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction

router = APIRouter(
    prefix="/v1/ledger", tags=["ledger"], responses=problem_responses(401, 403, 422, 429)
)


class Account(BaseModel):
    id: str
    object: Literal["ledger_account"] = "ledger_account"
    code: str
    type: str
    currency: str
    customer: str | None
    debit: int
    credit: int
    balance: int  # in the account's normal direction
    created_at: datetime


class Entry(BaseModel):
    account: str
    debit: int
    credit: int
    currency: str
    invoice: str | None = None


class Transaction(BaseModel):
    id: str
    object: Literal["ledger_transaction"] = "ledger_transaction"
    occurred_at: datetime
    kind: str
    source: dict[str, str]
    entries: list[Entry]


def _accounts(session: Session, org_id: str) -> list[Account]:
    return [
        Account(
            id=a.id, code=a.code, type=a.type, currency=a.currency, customer=a.customer_id,
            debit=d, credit=c, balance=postings.normal_balance(a.code, d, c),
            created_at=a.created_at,
        )
        for a, d, c in ledger.account_balances(session, org_id)
    ]  # fmt: skip


@router.get("/accounts", response_model=Page[Account])
def list_accounts(who: Principal = Depends(READ), session: Session = Depends(db)) -> Page[Account]:
    return Page(data=_accounts(session, who.org_id), has_more=False)


def _transactions(session: Session, org_id: str, txs: list[LedgerTransaction]) -> list[Transaction]:
    if not txs:
        return []
    entries = session.execute(
        select(LedgerEntry, LedgerAccount.code)
        .join(LedgerAccount, (LedgerAccount.org_id == LedgerEntry.org_id)
              & (LedgerAccount.id == LedgerEntry.account_id))
        .where(LedgerEntry.org_id == org_id,
               LedgerEntry.transaction_id.in_([t.id for t in txs]))
        .order_by(LedgerEntry.transaction_id, LedgerEntry.line)
    ).all()  # fmt: skip
    by_tx: dict[str, list[Entry]] = {}
    for entry, code in entries:
        by_tx.setdefault(entry.transaction_id, []).append(
            Entry(account=code, debit=entry.debit, credit=entry.credit,
                  currency=entry.currency, invoice=entry.invoice_id)
        )  # fmt: skip
    return [
        Transaction(id=t.id, occurred_at=t.occurred_at, kind=t.kind,
                    source={"type": t.source_type, "id": t.source_id},
                    entries=by_tx.get(t.id, []))
        for t in txs
    ]  # fmt: skip


@router.get("/transactions", response_model=Page[Transaction])
def list_transactions(
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=200),
    source: str | None = Query(None, max_length=40, description="Only this source's"),
    who: Principal = Depends(READ),
    session: Session = Depends(db),
) -> Page[Transaction]:
    stmt = select(LedgerTransaction).where(LedgerTransaction.org_id == who.org_id)
    if source is not None:
        stmt = stmt.where(LedgerTransaction.source_id == source)
    rows, has_more, next_cursor = paginate(session, stmt, LedgerTransaction.id, limit, cursor)
    return Page(
        data=_transactions(session, who.org_id, list(rows)),
        has_more=has_more,
        next_cursor=next_cursor,
    )


def _csv(header: list[str], rows: Iterator[list[object]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
        if buffer.tell() > 64_000:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.get("/export.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})  # fmt: skip
def export_csv(who: Principal = Depends(READ), session: Session = Depends(db)) -> StreamingResponse:
    """Every entry, oldest first: one row per entry with its transaction."""
    result = session.execute(
        select(LedgerTransaction, LedgerEntry, LedgerAccount.code)
        .join(LedgerEntry, (LedgerEntry.org_id == LedgerTransaction.org_id)
              & (LedgerEntry.transaction_id == LedgerTransaction.id))
        .join(LedgerAccount, (LedgerAccount.org_id == LedgerEntry.org_id)
              & (LedgerAccount.id == LedgerEntry.account_id))
        .where(LedgerTransaction.org_id == who.org_id)
        .order_by(LedgerTransaction.occurred_at, LedgerTransaction.id, LedgerEntry.line)
    ).all()  # fmt: skip
    rows = (
        [t.id, t.occurred_at.isoformat(), t.kind, t.source_type, t.source_id, code,
         e.debit, e.credit, e.currency, e.invoice_id or ""]
        for t, e, code in result
    )  # fmt: skip
    header = ["transaction", "occurred_at", "kind", "source_type", "source_id", "account",
              "debit", "credit", "currency", "invoice"]  # fmt: skip
    return StreamingResponse(
        _csv(header, rows), media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="ledger.csv"'},
    )  # fmt: skip


@router.get("/trial_balance.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}})  # fmt: skip
def trial_balance(
    who: Principal = Depends(READ), session: Session = Depends(db)
) -> StreamingResponse:
    """Every account's total debit and credit; per currency the columns are equal."""
    accounts = _accounts(session, who.org_id)
    rows: list[list[object]] = [
        [a.code, a.type, a.currency, a.debit, a.credit, a.balance] for a in accounts
    ]
    for currency in sorted({a.currency for a in accounts}):
        mine = [a for a in accounts if a.currency == currency]
        rows.append(["TOTAL", "", currency, sum(a.debit for a in mine),
                     sum(a.credit for a in mine), ""])  # fmt: skip
    return StreamingResponse(
        _csv(["account", "type", "currency", "debit", "credit", "balance"], iter(rows)),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="trial-balance.csv"'},
    )  # fmt: skip
