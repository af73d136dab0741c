"""Render the sample invoice in docs/samples/ (PDF and EN 16931 UBL XML).

A German SaaS company bills an Austrian business for March 2026: the plan's fixed fee,
graduated API usage, a mid-period seat upgrade (proration) and a 20 % coupon, with reverse
charge (EU B2B, category AE). Run: ``.venv/bin/python scripts/render_samples.py``.
"""

from __future__ import annotations

import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

from kassa.documents.model import Document, Line, Party, TaxRow
from kassa.documents.pdf import render_pdf
from kassa.documents.ubl import render_ubl

OUT = Path(__file__).resolve().parent.parent / "docs" / "samples"
MARCH = (date(2026, 3, 1), date(2026, 3, 31))
REVERSE_CHARGE_NOTE = (
    "Steuerschuldnerschaft des Leistungsempfängers (Reverse Charge): die Umsatzsteuer schuldet "
    "der Leistungsempfänger (Art. 196 MwStSystRL)."
)


def _line(description: str, quantity: str, unit: str, amount: int, start: date) -> Line:
    return Line(
        description=description,
        quantity=Decimal(quantity),
        unit_amount=Decimal(unit),
        amount=amount,
        period_start=start,
        period_end=MARCH[1],
        tax_category="AE",
        tax_rate=Decimal(0),
    )


def sample_invoice() -> Document:
    lines = [
        _line("Tarif Scale — Grundgebühr", "1", "490.00", 49_000, MARCH[0]),
        _line("API-Aufrufe — Stufe 1: die ersten 100.000 (inklusive)", "100000", "0", 0, MARCH[0]),
        _line("API-Aufrufe — Stufe 2: 100.001 bis 1.000.000", "900000", "0.0004", 36_000, MARCH[0]),
        # 234,567 × 0.0002 € = 46.9134 €, rounded once, half-up, to the cent.
        _line("API-Aufrufe — Stufe 3: über 1.000.000", "234567", "0.0002", 4_691, MARCH[0]),
        # 2 seats × 40 € × 20/31 days = 51.6129 €.
        _line(
            "Plätze 3 → 5 ab 12.03.2026 (anteilig, 20 von 31 Tagen)",
            "1",
            "51.61",
            5_161,
            date(2026, 3, 12),
        ),
    ]
    subtotal = sum(line.amount for line in lines)  # 94,852
    discount = 18_970  # 20 % of 948.52 €, rounded half-up
    lines.append(_line("Gutschein LAUNCH20 (20 % Rabatt)", "1", "-189.70", -discount, MARCH[0]))
    net = subtotal - discount
    return Document(
        kind="invoice",
        number="RE-2026-0042",
        issue_date=date(2026, 4, 1),
        due_date=date(2026, 4, 15),
        currency="eur",
        locale="de_DE",
        seller=Party(
            name="Wolkenwerk GmbH",
            address={
                "line1": "Torstraße 118",
                "city": "Berlin",
                "postal_code": "10119",
                "country": "DE",
            },
            tax_id="DE812345678",
            email="billing@wolkenwerk.example",
        ),
        buyer=Party(
            name="Alpenblick Software GmbH",
            address={
                "line1": "Mariahilfer Straße 47",
                "line2": "Top 12",
                "city": "Wien",
                "postal_code": "1060",
                "country": "AT",
            },
            tax_id="ATU12345678",
            email="accounts@alpenblick.example",
        ),
        lines=lines,
        taxes=[TaxRow(category="AE", rate=Decimal(0), taxable_amount=net, amount=0)],
        subtotal=subtotal,
        discount=discount,
        tax_total=0,
        total=net,
        amount_paid=0,
        amount_due=net,
        notes=[REVERSE_CHARGE_NOTE],
        payment_instructions=(
            "Bitte überweisen Sie den Betrag bis zum Fälligkeitsdatum und geben Sie die "
            "Rechnungsnummer RE-2026-0042 als Verwendungszweck an."
        ),
        payment_account="DE89 3704 0044 0532 0130 00",
        payment_bic="COBADEFFXXX",
        buyer_reference="PO-2026-0815",
        period_start=MARCH[0],
        period_end=MARCH[1],
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    doc = sample_invoice()
    (OUT / "invoice-sample.pdf").write_bytes(render_pdf(doc))
    (OUT / "invoice-sample.xml").write_bytes(render_ubl(doc))
    sys.stdout.write(f"wrote {OUT / 'invoice-sample.pdf'} and {OUT / 'invoice-sample.xml'}\n")


if __name__ == "__main__":
    main()
