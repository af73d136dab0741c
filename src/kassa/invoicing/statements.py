"""A customer's balance and statement, read off the ledger: what the customer owes is their
receivable minus their unused credit, and every money event that moved either is a line."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from kassa.customers.models import Customer
from kassa.invoicing import schemas
from kassa.ledger import postings
from kassa.ledger import service as ledger
from kassa.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from kassa.orgs import service as orgs

_DESCRIPTIONS = {
    "invoice_finalized": "Invoice",
    "credit_applied": "Customer credit applied",
    "credit_note": "Credit note",
    "payment": "Payment",
    "refund": "Refund",
    "write_off": "Written off",
    "invoice_voided": "Invoice voided",
}


def balance(session: Session, org_id: str, customer_id: str) -> schemas.Balance:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: {"receivable": 0, "credit": 0})
    for account, debit, credit in ledger.account_balances(session, org_id, customer_id=customer_id):
        if account.code == postings.receivable(customer_id):
            rows[account.currency]["receivable"] += debit - credit
        elif account.code == postings.customer_credit(customer_id):
            rows[account.currency]["credit"] += credit - debit
    return schemas.Balance(
        customer=customer_id,
        balances=[
            schemas.BalanceRow(currency=c, receivable=v["receivable"], credit=v["credit"],
                               balance=v["receivable"] - v["credit"])
            for c, v in sorted(rows.items())
        ],
    )  # fmt: skip


def _day_start(day: date, tz: ZoneInfo) -> datetime | None:
    """The instant ``day`` begins in ``tz``, in UTC; None when that lies before year 1 in
    UTC (0001-01-01 east of Greenwich): nothing can have happened before it anyway."""
    try:
        return datetime.combine(day, time(0), tz).astimezone(UTC)
    except OverflowError:
        return None


def statement(
    session: Session, org_id: str, customer: Customer, start: date, end: date,
    currency: str | None,
) -> schemas.Statement:  # fmt: skip
    """Opening balance at the start of ``start``, each money event through the end of
    ``end`` (days in the customer's time zone), closing balance."""
    tz = ZoneInfo(customer.timezone or orgs.load(session, org_id).timezone)
    lo = _day_start(start, tz)
    hi = _day_start(end + timedelta(days=1), tz) if end < date.max else None
    codes = (postings.receivable(customer.id), postings.customer_credit(customer.id))
    if currency is None:
        currency = customer.currency or orgs.load(session, org_id).currency
    currency = currency.lower()
    rows = session.execute(
        select(LedgerEntry, LedgerAccount, LedgerTransaction)
        .join(LedgerAccount, (LedgerAccount.org_id == LedgerEntry.org_id)
              & (LedgerAccount.id == LedgerEntry.account_id))
        .join(LedgerTransaction, (LedgerTransaction.org_id == LedgerEntry.org_id)
              & (LedgerTransaction.id == LedgerEntry.transaction_id))
        .where(LedgerEntry.org_id == org_id, LedgerAccount.code.in_(codes),
               LedgerEntry.currency == currency,
               true() if hi is None else LedgerEntry.occurred_at < hi)
        .order_by(LedgerEntry.occurred_at, LedgerEntry.transaction_id, LedgerEntry.line)
    ).all()  # fmt: skip
    opening = 0
    per_tx: dict[str, tuple[LedgerTransaction, int, int]] = {}
    for entry, _account, tx in rows:
        # debits of the receivable or of the credit account raise what the customer owes
        amount = entry.debit - entry.credit
        if lo is not None and entry.occurred_at < lo:
            opening += amount
            continue
        _, debit, credit = per_tx.get(tx.id, (tx, 0, 0))
        per_tx[tx.id] = (tx, debit + max(amount, 0), credit + max(-amount, 0))
    items = []
    running = opening
    for tx, debit, credit in per_tx.values():
        if debit == credit:
            continue  # moved between the customer's own accounts only
        net = debit - credit
        running += net
        items.append(
            schemas.StatementItem(
                occurred_at=tx.occurred_at, kind=tx.kind,
                source={"type": tx.source_type, "id": tx.source_id},
                description=_DESCRIPTIONS.get(tx.kind, tx.kind),
                debit=max(net, 0), credit=max(-net, 0), balance=running,
            )
        )  # fmt: skip
    return schemas.Statement(
        customer=customer.id, currency=currency, from_=start, to=end,
        opening_balance=opening, items=items, closing_balance=running,
    )  # fmt: skip


def statement_pdf(
    session: Session, org_id: str, customer: Customer, data: schemas.Statement
) -> bytes:
    from kassa.documents import statement as render

    org = orgs.load(session, org_id)
    return render.render_statement_pdf(
        seller=org.name, buyer=customer.name or customer.external_id or customer.id,
        locale=customer.locale or "en", currency=data.currency, start=data.from_, end=data.to,
        opening=data.opening_balance, closing=data.closing_balance,
        items=[(i.occurred_at.date(), i.description, i.source["id"], i.debit, i.credit,
                i.balance) for i in data.items],
    )  # fmt: skip
