"""Pure double-entry rules: which accounts a money event moves, and by how much.

A posting is a signed amount on an account: positive debits it, negative credits it. A
transaction's postings sum to zero per currency (all postings of one transaction share its
currency). Account codes are strings; the account's type decides the sign of its balance
(assets and expenses are debit-normal, liabilities and revenue credit-normal).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

AccountType = Literal["asset", "liability", "revenue", "expense"]

PSP_CLEARING = "psp_clearing"
CASH = "cash"
DISCOUNTS = "discounts"
WRITE_OFFS = "write_offs"
REFUNDS = "refunds"

_FIXED_TYPES: dict[str, AccountType] = {
    PSP_CLEARING: "asset",
    CASH: "asset",
    DISCOUNTS: "expense",
    WRITE_OFFS: "expense",
    REFUNDS: "expense",
}


def receivable(customer_id: str) -> str:
    return f"receivable:{customer_id}"


def customer_credit(customer_id: str) -> str:
    return f"customer_credit:{customer_id}"


def revenue(product: str) -> str:
    return f"revenue:{product}"


def tax_payable(category: str, rate: Decimal) -> str:
    return f"tax:{category}:{rate.normalize():f}"


def account_type(code: str) -> AccountType:
    kind = code.split(":", 1)[0]
    if kind == "receivable":
        return "asset"
    if kind in ("customer_credit", "tax"):
        return "liability"
    if kind == "revenue":
        return "revenue"
    if code in _FIXED_TYPES:
        return _FIXED_TYPES[code]
    raise ValueError(f"unknown ledger account {code!r}")


def normal_balance(code: str, debit: int, credit: int) -> int:
    """The balance as its holder reads it: debit-normal accounts debit minus credit."""
    if account_type(code) in ("asset", "expense"):
        return debit - credit
    return credit - debit


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: int  # > 0 debit, < 0 credit
    invoice_id: str | None = None  # set on receivable postings


def entries(postings: Iterable[Posting]) -> list[tuple[str, int, int, str | None]]:
    """(account, debit, credit, invoice) rows, zero postings dropped, same-account postings
    of the same invoice netted."""
    netted: dict[tuple[str, str | None], int] = {}
    for p in postings:
        key = (p.account, p.invoice_id)
        netted[key] = netted.get(key, 0) + p.amount
    return [
        (account, max(amount, 0), max(-amount, 0), invoice)
        for (account, invoice), amount in netted.items()
        if amount != 0
    ]


def check_balanced(postings: Sequence[Posting]) -> None:
    total = sum(p.amount for p in postings)
    if total != 0:
        raise ValueError(f"postings do not balance: {total:+d}")


# --- money events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleLine:
    """A line's net amount and the revenue account it belongs to (negative for credits)."""

    account: str
    amount: int


@dataclass(frozen=True, slots=True)
class TaxAmount:
    category: str
    rate: Decimal
    amount: int


def invoice_finalized(
    customer_id: str, invoice_id: str, lines: Sequence[SaleLine], taxes: Sequence[TaxAmount],
) -> list[Posting]:  # fmt: skip
    """The customer owes the total: receivable up, revenue and tax payable earned. A negative
    total (credits exceeding charges) becomes customer credit instead of a receivable."""
    postings = [Posting(line.account, -line.amount) for line in lines]
    postings += [Posting(tax_payable(t.category, t.rate), -t.amount) for t in taxes]
    total = -sum(p.amount for p in postings)
    if total >= 0:
        postings.append(Posting(receivable(customer_id), total, invoice_id))
    else:
        postings.append(Posting(customer_credit(customer_id), total))
    return postings


def credit_applied(customer_id: str, invoice_id: str, amount: int) -> list[Posting]:
    """Customer credit settles part of an invoice."""
    return [
        Posting(customer_credit(customer_id), amount),
        Posting(receivable(customer_id), -amount, invoice_id),
    ]


def credit_note(
    customer_id: str, invoice_id: str, lines: Sequence[SaleLine], taxes: Sequence[TaxAmount],
    to_invoice: int, to_credit: int,
) -> list[Posting]:  # fmt: skip
    """Revenue and tax given back; the receivable shrinks, the rest is customer credit."""
    postings = [Posting(line.account, line.amount) for line in lines]
    postings += [Posting(tax_payable(t.category, t.rate), t.amount) for t in taxes]
    postings.append(Posting(receivable(customer_id), -to_invoice, invoice_id))
    postings.append(Posting(customer_credit(customer_id), -to_credit))
    return postings


def payment(customer_id: str, invoice_id: str, amount: int, via: str) -> list[Posting]:
    """Money received for an invoice (``via`` is psp_clearing or cash)."""
    return [Posting(via, amount), Posting(receivable(customer_id), -amount, invoice_id)]


def refund(customer_id: str, amount: int, from_credit: int, via: str) -> list[Posting]:
    """Money paid back: out of the customer's credit first, the rest is a refund expense."""
    return [
        Posting(customer_credit(customer_id), from_credit),
        Posting(REFUNDS, amount - from_credit),
        Posting(via, -amount),
    ]


def write_off(customer_id: str, invoice_id: str, amount: int) -> list[Posting]:
    return [Posting(WRITE_OFFS, amount), Posting(receivable(customer_id), -amount, invoice_id)]


def reverse(postings: Iterable[Posting]) -> list[Posting]:
    return [Posting(p.account, -p.amount, p.invoice_id) for p in postings]
