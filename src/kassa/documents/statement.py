"""A customer statement as PDF (WeasyPrint): opening balance, each money event, closing
balance, amounts and dates localized with Babel. Every value is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape

from babel.dates import format_date
from babel.numbers import format_currency

from kassa.core.money import to_major

Item = tuple[date, str, str, int, int, int]  # day, description, source id, debit, credit, bal

_CSS = """
@page { size: A4; margin: 18mm 16mm; }
body { font-family: "DejaVu Sans", "Kassa CJK", sans-serif; font-size: 9.5pt; color: #1d2330; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
.meta { color: #555; margin-bottom: 6mm; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; border-bottom: 1px solid #999; padding: 1.5mm 1mm; font-weight: 600; }
td { border-bottom: 1px solid #e2e2e2; padding: 1.5mm 1mm; }
.num { text-align: right; white-space: nowrap; }
tr.total td { font-weight: 700; border-top: 1px solid #999; border-bottom: none; }
"""


def render_statement_html(
    *, seller: str, buyer: str, locale: str, currency: str, start: date, end: date,
    opening: int, closing: int, items: Sequence[Item],
) -> str:  # fmt: skip
    locale = locale.replace("-", "_")  # "de-AT" as stored; babel takes "de_AT" (as pdf.py does)

    def money(minor: int) -> str:
        return escape(format_currency(to_major(minor, currency), currency.upper(), locale=locale))

    def day(d: date) -> str:
        return escape(format_date(d, format="medium", locale=locale))

    rows = [
        f'<tr><td>{day(start)}</td><td colspan="4">Opening balance</td>'
        f'<td class="num">{money(opening)}</td></tr>'
    ]
    for when, description, source, debit, credit, running in items:
        rows.append(
            f"<tr><td>{day(when)}</td><td>{escape(description)}</td><td>{escape(source)}</td>"
            f'<td class="num">{money(debit) if debit else ""}</td>'
            f'<td class="num">{money(credit) if credit else ""}</td>'
            f'<td class="num">{money(running)}</td></tr>'
        )
    rows.append(
        f'<tr class="total"><td>{day(end)}</td><td colspan="4">Closing balance</td>'
        f'<td class="num">{money(closing)}</td></tr>'
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{_CSS}</style></head><body>"
        f"<h1>Statement</h1><div class='meta'>{escape(seller)} → {escape(buyer)}<br>"
        f"{day(start)} – {day(end)} · {escape(currency.upper())}</div>"
        "<table><thead><tr><th>Date</th><th>Description</th><th>Reference</th>"
        "<th class='num'>Charges</th><th class='num'>Credits</th><th class='num'>Balance</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></body></html>"
    )


def render_statement_pdf(**kwargs: object) -> bytes:
    from kassa.documents.pdf import html_to_pdf

    return html_to_pdf(render_statement_html(**kwargs))  # type: ignore[arg-type]
