"""What an invoice or credit note says, independent of the database and of any output format.

Amounts are ``int`` in the currency's minor unit (cents, yen, fils); ``Line.unit_amount`` and
``Line.quantity`` are exact ``Decimal`` (never ``float``), the unit price in *major* units.
Dates are calendar dates; a period's end is the last day it covers (inclusive, as EN 16931).

The totals must add up, or the constructor raises ``ValueError``:

* ``tax_total`` = Σ ``taxes[].amount``;
* ``total`` = ``subtotal`` − ``discount`` + ``tax_total``;
* when there are tax rows, Σ ``taxes[].taxable_amount`` = ``subtotal`` − ``discount``;
* a discount is shown either as negative lines (Σ ``lines[].amount`` = ``subtotal`` −
  ``discount``: Kassa's coupon lines) or as a document-level allowance (Σ ``lines[].amount`` =
  ``subtotal``); the UBL rendering follows whichever holds.

``amount_due`` is what remains after ``amount_paid``, ``credit_applied`` and any other
settlement (credit notes, write-offs) the caller knows of; it is rendered as given.
``payment_account`` (an IBAN or account number, BT-84) and ``payment_bic`` (BT-86) are
optional: EN 16931 needs the account for the UBL to name credit transfer as the payment means.
``buyer_reference`` is EN 16931's BT-10 (XRechnung's Leitweg-ID goes there).

A line priced as a whole (graduated, volume or package tiers) keeps the quantity used:
``unit_amount`` is then the price of ``base_quantity`` units (its amount for all of them), so
quantity × unit_amount / base_quantity = amount still holds; ``pricing`` says how it was priced
and ``unit`` names what was counted ("kWh").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from kassa.core.money import is_currency
from kassa.tax.rules import CATEGORIES

ADDRESS_KEYS = frozenset({"line1", "line2", "city", "postal_code", "state", "country"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Party:
    """Seller or buyer. ``address`` keys: line1, line2, city, postal_code, state, country (ISO
    3166-1 alpha-2); any may be missing."""

    name: str
    address: Mapping[str, str]
    tax_id: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.address) - ADDRESS_KEYS
        if unknown:
            raise ValueError(f"unknown address keys: {', '.join(sorted(unknown))}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One invoice line, net of tax. ``amount`` may be negative (a discount or a credit)."""

    description: str
    quantity: Decimal
    unit_amount: Decimal  # major units: Decimal("12.5") EUR is 12.50 €
    amount: int  # minor units, net of tax
    period_start: date | None = None
    period_end: date | None = None  # inclusive
    tax_category: str  # EN 16931 / UNCL5305: S, Z, E, AE, K, G, O (L, M)
    tax_rate: Decimal  # percent: Decimal("19")
    base_quantity: Decimal | None = None  # the unit price is for this many units (default 1)
    unit: str | None = None  # what the quantity counts, for people: "kWh", "GB"
    pricing: str | None = None  # how the amount was priced, for people: the tiers used

    def __post_init__(self) -> None:
        _check_decimal("quantity", self.quantity)
        _check_decimal("unit_amount", self.unit_amount)
        if self.base_quantity is not None:
            _check_decimal("base_quantity", self.base_quantity)
            if self.base_quantity <= 0:
                raise ValueError("base_quantity must be positive")
        _check_decimal("tax_rate", self.tax_rate)
        _check_category(self.tax_category)
        _check_period(self.period_start, self.period_end)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaxRow:
    """One row of the tax breakdown: all lines of one (category, rate)."""

    category: str
    rate: Decimal  # percent
    taxable_amount: int  # minor units
    amount: int  # minor units

    def __post_init__(self) -> None:
        _check_decimal("rate", self.rate)
        _check_category(self.category)


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """An invoice or a credit note, ready to render (see the module docstring for the sums)."""

    kind: Literal["invoice", "credit_note"]
    number: str
    issue_date: date
    due_date: date | None
    currency: str  # lower-case ISO 4217: "eur", "jpy", "bhd"
    locale: str  # "en", "de_DE", "fr"
    seller: Party
    buyer: Party
    lines: Sequence[Line]
    taxes: Sequence[TaxRow]
    subtotal: int
    discount: int
    tax_total: int
    total: int
    amount_paid: int
    amount_due: int
    notes: Sequence[str] = ()  # printed as they are, e.g. the reverse-charge note
    payment_instructions: str | None = None
    payment_account: str | None = None  # IBAN or account number to pay to (EN 16931 BT-84)
    payment_bic: str | None = None  # the account's BIC (EN 16931 BT-86)
    buyer_reference: str | None = None  # EN 16931 BT-10 (e.g. XRechnung's Leitweg-ID)
    period_start: date | None = None
    period_end: date | None = None  # inclusive
    billing_reference: str | None = None  # credit note: the number of the invoice it credits
    credit_applied: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("invoice", "credit_note"):
            raise ValueError(f"kind must be 'invoice' or 'credit_note', not {self.kind!r}")
        if not is_currency(self.currency):
            raise ValueError(f"currency must be a lower-case ISO 4217 code, not {self.currency!r}")
        if not self.number:
            raise ValueError("a document needs a number")
        _check_period(self.period_start, self.period_end)
        # Immutable copies: a caller's list cannot change a rendered document afterwards.
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "taxes", tuple(self.taxes))
        object.__setattr__(self, "notes", tuple(self.notes))
        if self.discount < 0:
            raise ValueError("discount is a non-negative amount")
        taxes = sum(row.amount for row in self.taxes)
        if self.tax_total != taxes:
            raise ValueError(f"tax_total {self.tax_total} != sum of tax rows {taxes}")
        net = self.subtotal - self.discount
        if self.total != net + self.tax_total:
            raise ValueError(
                f"total {self.total} != subtotal - discount + tax_total {net + self.tax_total}"
            )
        taxable = sum(row.taxable_amount for row in self.taxes)
        if self.taxes and taxable != net:
            raise ValueError(f"taxable amounts sum to {taxable}, not subtotal - discount {net}")
        lines = sum(line.amount for line in self.lines)
        if lines not in (self.subtotal, net):
            raise ValueError(
                f"lines sum to {lines}: neither subtotal {self.subtotal} (discount as an "
                f"allowance) nor subtotal - discount {net} (discount as negative lines)"
            )

    @property
    def lines_include_discount(self) -> bool:
        """True when the discount is already in the lines (negative lines), False when it is a
        document-level allowance on top of them (also False when there is no discount)."""
        return self.discount != 0 and sum(line.amount for line in self.lines) == (
            self.subtotal - self.discount
        )


def _check_decimal(name: str, value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, not {value!r}")


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown tax category {category!r} (EN 16931 / UNCL5305 code)")


def _check_period(start: date | None, end: date | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValueError(f"period ends ({end}) before it starts ({start})")
