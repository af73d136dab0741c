"""Invoices and credit notes as HTML and PDF (A4, WeasyPrint), localized with Babel.

Every dynamic value goes through :func:`html.escape`; the template
(``templates/invoice.html``) references no external resource, so rendering never touches the
network. Labels exist in English, German and French; any other language falls back to English
labels while numbers, dates and country names still follow the document's locale.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from functools import cache
from html import escape
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from string import Template

from babel import Locale
from babel.dates import format_date, format_interval
from babel.numbers import format_currency, format_decimal, format_percent

from kassa.core.money import to_major
from kassa.documents.model import Document, Line, Party, TaxRow
from kassa.documents.ubl import is_vat_id

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "invoice": "Invoice",
        "credit_note": "Credit note",
        "seller": "From",
        "buyer": "Bill to",
        "tax_id": "VAT ID",
        "tax_number": "Tax ID",
        "email": "Email",
        "number": "Number",
        "issue_date": "Issue date",
        "due_date": "Due date",
        "period": "Billing period",
        "credited_invoice": "Credited invoice",
        "reference": "Reference",
        "description": "Description",
        "line_period": "Period",
        "quantity": "Qty",
        "unit_price": "Unit price",
        "tax": "Tax",
        "amount": "Amount",
        "no_lines": "No items",
        "tax_breakdown": "Tax breakdown",
        "tax_rate": "Rate",
        "taxable_amount": "Taxable amount",
        "tax_amount": "Tax",
        "subtotal": "Subtotal",
        "discount": "Discount",
        "tax_total": "Tax",
        "total": "Total",
        "credit_applied": "Credit applied",
        "amount_paid": "Amount paid",
        "amount_due": "Amount due",
        "notes": "Notes",
        "payment": "Payment",
        "account": "Account",
        "bic": "BIC",
        "buyer_reference": "Your reference",
        "S": "Standard rate",
        "Z": "Zero rated",
        "E": "Exempt",
        "AE": "Reverse charge",
        "K": "Intra-Community supply",
        "G": "Export outside the EU",
        "O": "Not subject to VAT",
        "L": "Canary Islands tax",
        "M": "Ceuta and Melilla tax",
    },
    "de": {
        "invoice": "Rechnung",
        "credit_note": "Rechnungskorrektur",
        "seller": "Von",
        "buyer": "Rechnungsempfänger",
        "tax_id": "USt-IdNr.",
        "tax_number": "Steuernummer",
        "email": "E-Mail",
        "number": "Nummer",
        "issue_date": "Ausstellungsdatum",
        "due_date": "Fällig am",
        "period": "Leistungszeitraum",
        "credited_invoice": "Korrigierte Rechnung",
        "reference": "Bezug",
        "description": "Beschreibung",
        "line_period": "Zeitraum",
        "quantity": "Menge",
        "unit_price": "Einzelpreis",
        "tax": "USt.",
        "amount": "Betrag",
        "no_lines": "Keine Positionen",
        "tax_breakdown": "Steueraufstellung",
        "tax_rate": "Satz",
        "taxable_amount": "Nettobetrag",
        "tax_amount": "Steuer",
        "subtotal": "Zwischensumme",
        "discount": "Rabatt",
        "tax_total": "Umsatzsteuer",
        "total": "Gesamtbetrag",
        "credit_applied": "Verrechnetes Guthaben",
        "amount_paid": "Bereits bezahlt",
        "amount_due": "Zu zahlen",
        "notes": "Hinweise",
        "payment": "Zahlung",
        "account": "Konto",
        "bic": "BIC",
        "buyer_reference": "Ihr Zeichen",
        "S": "Normalsatz",
        "Z": "Nullsatz",
        "E": "Steuerbefreit",
        "AE": "Steuerschuldnerschaft des Leistungsempfängers",
        "K": "Innergemeinschaftliche Lieferung",
        "G": "Ausfuhr in Drittländer",
        "O": "Nicht steuerbar",
        "L": "Kanarische Inseln (IGIC)",
        "M": "Ceuta und Melilla (IPSI)",
    },
    "fr": {
        "invoice": "Facture",
        "credit_note": "Avoir",
        "seller": "Émetteur",
        "buyer": "Facturé à",
        "tax_id": "N° de TVA",
        "tax_number": "N° fiscal",
        "email": "E-mail",
        "number": "Numéro",
        "issue_date": "Date d’émission",
        "due_date": "Date d’échéance",
        "period": "Période de facturation",
        "credited_invoice": "Facture d’origine",
        "reference": "Référence",
        "description": "Description",
        "line_period": "Période",
        "quantity": "Qté",
        "unit_price": "Prix unitaire",
        "tax": "TVA",
        "amount": "Montant",
        "no_lines": "Aucune ligne",
        "tax_breakdown": "Détail de la TVA",
        "tax_rate": "Taux",
        "taxable_amount": "Base HT",
        "tax_amount": "TVA",
        "subtotal": "Sous-total",
        "discount": "Remise",
        "tax_total": "TVA",
        "total": "Total TTC",
        "credit_applied": "Crédit imputé",
        "amount_paid": "Déjà payé",
        "amount_due": "Net à payer",
        "notes": "Mentions",
        "payment": "Paiement",
        "account": "Compte",
        "bic": "BIC",
        "buyer_reference": "Votre référence",
        "S": "Taux normal",
        "Z": "Taux zéro",
        "E": "Exonéré",
        "AE": "Autoliquidation",
        "K": "Livraison intracommunautaire",
        "G": "Exportation hors UE",
        "O": "Hors champ de la TVA",
        "L": "IGIC (îles Canaries)",
        "M": "IPSI (Ceuta et Melilla)",
    },
}

# Countries that write "City, State ZIP" rather than "ZIP City".
_CITY_FIRST = frozenset({"US", "CA", "AU"})
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=[-\d])|(?<=\d)(?=[^\W\d_])")


def render_html(doc: Document) -> str:
    """The document as a self-contained HTML page (inline CSS, no external resources)."""
    fmt = _Formatter(doc)
    labels = fmt.labels
    title = labels[doc.kind]
    return _template().substitute(
        lang=escape(doc.locale.replace("_", "-")),
        title=escape(title),
        number=escape(doc.number),
        seller_name=escape(doc.seller.name),
        parties=_party(labels["seller"], doc.seller, fmt) + _party(labels["buyer"], doc.buyer, fmt),
        meta=_rows(_meta(doc, fmt)),
        lines_head=_lines_head(labels),
        lines="\n".join(_line(line, fmt) for line in doc.lines)
        or f'<tr><td class="empty" colspan="6">{escape(labels["no_lines"])}</td></tr>',
        taxes=_taxes(doc.taxes, fmt),
        totals=_totals(doc, fmt),
        notes=_notes(doc.notes, labels),
        payment=_payment(doc, labels),
    )


def render_pdf(doc: Document) -> bytes:
    """The document as an A4 PDF."""
    return html_to_pdf(render_html(doc))


# Fonts for the scripts DejaVu Sans lacks: Noto Sans CJK (SIL Open Font License 1.1) from the
# ``cvttf-notosanscjk-regular`` dependency (one OpenType file covering Chinese, Japanese kana
# and Korean Hangul). The template names the family after DejaVu Sans, so every character
# DejaVu has keeps its look and the others fall back to it instead of printing empty boxes.
CJK_FAMILY = "Kassa CJK"
_CJK_PACKAGE = "cvttf_NotoSansCJK_Regular"
_FIRST_CJK = 0x1100  # Hangul Jamo; everything below is Latin, Greek, Cyrillic, ... (DejaVu)


@cache
def font_files() -> dict[str, Path]:
    """The font files Kassa brings along, by family (none when the package is missing)."""
    try:
        found = sorted(
            Path(str(f)) for f in files(_CJK_PACKAGE).iterdir() if str(f).endswith(".otf")
        )
    except ModuleNotFoundError:
        return {}
    return {CJK_FAMILY: found[0]} if found else {}


def _font_faces(html: str) -> str:
    """``@font-face`` rules for the characters of ``html`` beyond DejaVu's scripts: the CJK
    font cut down to exactly those characters, inline (a few KB). WeasyPrint would otherwise
    subset the whole 65 000-glyph font itself, which takes ~10 s without HarfBuzz-Subset."""
    path = font_files().get(CJK_FAMILY)
    text = "".join(sorted({c for c in html if ord(c) >= _FIRST_CJK}))
    if path is None or not text:
        return ""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options(
        hinting=False, desubroutinize=True, layout_features=[], notdef_outline=True
    )
    options.drop_tables += ["GSUB", "GPOS", "BASE", "VORG", "SVG "]
    font = TTFont(str(path), lazy=True)
    subsetter = subset.Subsetter(options)
    # with ASCII too: Pango may set the spaces and digits inside a CJK run in this font
    subsetter.populate(text=text + "".join(map(chr, range(0x20, 0x7F))))
    subsetter.subset(font)
    data = BytesIO()
    font.save(data)
    source = base64.b64encode(data.getvalue()).decode("ascii")
    return (
        f'@font-face {{ font-family: "{CJK_FAMILY}"; src: url("data:font/otf;base64,{source}"); }}'
    )


def html_to_pdf(html: str) -> bytes:
    """A self-contained HTML page as PDF, with Kassa's fonts available to it (from the
    installed package's files, never from the network)."""
    from weasyprint import CSS, HTML  # imported on use: it takes a while and needs Pango
    from weasyprint.text.fonts import FontConfiguration

    fonts = FontConfiguration()
    faces = _font_faces(html)
    sheets = [CSS(string=faces, font_config=fonts)] if faces else []
    pdf: bytes = HTML(string=html).write_pdf(stylesheets=sheets, font_config=fonts)
    return pdf


@cache
def _template() -> Template:
    source = files("kassa.documents").joinpath("templates", "invoice.html")
    return Template(source.read_text(encoding="utf-8"))


class _Formatter:
    """Numbers, money, dates and labels in one document's locale and currency."""

    def __init__(self, doc: Document) -> None:
        self.locale = Locale.parse(doc.locale.replace("-", "_"))
        self.labels = LABELS.get(self.locale.language, LABELS["en"])
        self.currency = doc.currency
        self.code = doc.currency.upper()

    def money(self, minor: int) -> str:
        major = to_major(minor, self.currency)
        return _spaced(format_currency(major, self.code, locale=self.locale))

    def price(self, major: Decimal) -> str:
        """A unit price: at least the currency's decimals, more when it has them (0.0025 €)."""
        text = format_currency(major, self.code, locale=self.locale, decimal_quantization=False)
        return _spaced(text)

    def quantity(self, value: Decimal) -> str:
        return format_decimal(value, locale=self.locale, decimal_quantization=False)

    def rate(self, percent: Decimal) -> str:
        return format_percent(percent.scaleb(-2), locale=self.locale, decimal_quantization=False)

    def day(self, value: date) -> str:
        return format_date(value, format="medium", locale=self.locale)

    def period(self, start: date | None, end: date | None) -> str:
        if start is not None and end is not None:
            if start == end:
                return self.day(start)
            return format_interval(start, end, skeleton="yMMMd", locale=self.locale)
        if start is not None:
            return f"{self.day(start)} –"
        if end is not None:
            return f"– {self.day(end)}"
        return ""

    def country(self, code: str) -> str:
        name: str = self.locale.territories.get(code.upper(), code)
        return name

    def category(self, category: str, rate: Decimal) -> str:
        name = self.labels.get(category, category)
        return name if category == "O" else f"{name} {self.rate(rate)}"


def _spaced(text: str) -> str:
    """CLDR currency spacing, which Babel leaves out: "BHD 1.250", not "BHD1.250"."""
    return _LETTER_DIGIT.sub("\u00a0", text)


def _rows(rows: Iterable[tuple[str, str]]) -> str:
    return "\n".join(
        f'<tr><td class="label">{escape(label)}</td><td class="value">{escape(value)}</td></tr>'
        for label, value in rows
    )


def _party(heading: str, party: Party, fmt: _Formatter) -> str:
    parts = [f'<p class="name">{escape(party.name)}</p>']
    parts += [f"<p>{escape(line)}</p>" for line in _address(party.address, fmt)]
    extra = []
    if party.tax_id:
        # a VAT id has a country prefix; anything else (an EIN, an ABN) is another tax number
        label = fmt.labels["tax_id" if is_vat_id(party.tax_id) else "tax_number"]
        extra.append(f"<p>{escape(label)}: {escape(party.tax_id)}</p>")
    if party.email:
        extra.append(f"<p>{escape(party.email)}</p>")
    if extra:
        parts.append(f'<div class="extra">{"".join(extra)}</div>')
    return f'<div class="party"><h2>{escape(heading)}</h2>{"".join(parts)}</div>'


def _address(address: Mapping[str, str], fmt: _Formatter) -> list[str]:
    get = address.get
    country = (get("country") or "").upper()
    lines = [value for value in (get("line1"), get("line2")) if value]
    city, postal, state = get("city") or "", get("postal_code") or "", get("state") or ""
    if country in _CITY_FIRST:
        region = " ".join(value for value in (state, postal) if value)
        locality = ", ".join(value for value in (city, region) if value)
    else:
        locality = " ".join(value for value in (postal, city) if value)
    lines += [value for value in (locality, "" if country in _CITY_FIRST else state) if value]
    if country:
        lines.append(fmt.country(country))
    return lines


def _meta(doc: Document, fmt: _Formatter) -> list[tuple[str, str]]:
    labels = fmt.labels
    rows = [
        (labels["number"], doc.number),
        (labels["issue_date"], fmt.day(doc.issue_date)),
    ]
    if doc.due_date is not None:
        rows.append((labels["due_date"], fmt.day(doc.due_date)))
    if doc.period_start is not None or doc.period_end is not None:
        rows.append((labels["period"], fmt.period(doc.period_start, doc.period_end)))
    if doc.billing_reference:
        label = labels["credited_invoice" if doc.kind == "credit_note" else "reference"]
        rows.append((label, doc.billing_reference))
    if doc.buyer_reference:
        rows.append((labels["buyer_reference"], doc.buyer_reference))
    return rows


def _lines_head(labels: Mapping[str, str]) -> str:
    cells = [
        ("", "description"),
        ("", "line_period"),
        ("num", "quantity"),
        ("num", "unit_price"),
        ("num", "tax"),
        ("num", "amount"),
    ]
    return (
        "<tr>"
        + "".join(f'<th class="{css}">{escape(labels[key])}</th>' for css, key in cells)
        + "</tr>"
    )


def _line(line: Line, fmt: _Formatter) -> str:
    tax = "—" if line.tax_category == "O" else fmt.rate(line.tax_rate)
    if line.tax_category not in ("S", "O"):
        tax = f"{tax} {line.tax_category}"
    quantity = fmt.quantity(line.quantity)
    if line.unit:
        quantity = f"{quantity}\u00a0{line.unit}"
    # a line priced as a whole (tiers, packages) has no one unit price: its pricing says how
    price = "—" if line.base_quantity is not None else fmt.price(line.unit_amount)
    description = escape(line.description)
    if line.pricing:
        description += f'<div class="pricing">{escape(line.pricing)}</div>'
    cells = [
        ("period", escape(fmt.period(line.period_start, line.period_end))),
        ("num", escape(quantity)),
        ("num", escape(price)),
        ("num", escape(tax)),
        ("num", escape(fmt.money(line.amount))),
    ]
    return (
        f'<tr><td class="">{description}</td>'
        + "".join(f'<td class="{css}">{text}</td>' for css, text in cells)
        + "</tr>"
    )


def _taxes(taxes: Iterable[TaxRow], fmt: _Formatter) -> str:
    rows = [
        "<tr>"
        f"<td>{escape(fmt.category(row.category, row.rate))}</td>"
        f'<td class="num">{escape(fmt.money(row.taxable_amount))}</td>'
        f'<td class="num">{escape(fmt.money(row.amount))}</td>'
        "</tr>"
        for row in taxes
    ]
    if not rows:
        return ""
    labels = fmt.labels
    head = (
        f"<tr><th>{escape(labels['tax_rate'])}</th>"
        f'<th class="num">{escape(labels["taxable_amount"])}</th>'
        f'<th class="num">{escape(labels["tax_amount"])}</th></tr>'
    )
    return (
        f"<h2>{escape(labels['tax_breakdown'])}</h2>"
        f'<table class="taxes"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _totals(doc: Document, fmt: _Formatter) -> str:
    labels = fmt.labels
    # "Subtotal" is always what the lines above add up to. A discount that is already one of
    # those lines (a coupon line) is not repeated below them.
    if doc.lines_include_discount:
        rows = [("", labels["subtotal"], fmt.money(doc.subtotal - doc.discount))]
    else:
        rows = [("", labels["subtotal"], fmt.money(doc.subtotal))]
        if doc.discount:
            rows.append(("", labels["discount"], fmt.money(-doc.discount)))
    rows.append(("", labels["tax_total"], fmt.money(doc.tax_total)))
    rows.append(("strong", labels["total"], fmt.money(doc.total)))
    if doc.credit_applied:
        rows.append(("", labels["credit_applied"], fmt.money(-doc.credit_applied)))
    if doc.amount_paid:
        rows.append(("", labels["amount_paid"], fmt.money(-doc.amount_paid)))
    if doc.kind == "invoice":  # a credit note's total is what it credits
        rows.append(("due", labels["amount_due"], fmt.money(doc.amount_due)))
    return "\n".join(
        f'<tr class="{css}"><td>{escape(label)}</td><td class="num">{escape(value)}</td></tr>'
        for css, label, value in rows
    )


def _notes(notes: Iterable[str], labels: Mapping[str, str]) -> str:
    paragraphs = "".join(f"<p>{escape(note)}</p>" for note in notes if note)
    if not paragraphs:
        return ""
    return f'<div class="notes"><h2>{escape(labels["notes"])}</h2>{paragraphs}</div>'


def _payment(doc: Document, labels: Mapping[str, str]) -> str:
    parts = []
    if doc.payment_instructions:
        parts.append(f"<p>{escape(doc.payment_instructions)}</p>")
    if doc.payment_account:
        parts.append(f"<p>{escape(labels['account'])}: {escape(doc.payment_account)}</p>")
        if doc.payment_bic:
            parts.append(f"<p>{escape(labels['bic'])}: {escape(doc.payment_bic)}</p>")
    if not parts:
        return ""
    return f'<div class="payment"><h2>{escape(labels["payment"])}</h2>{"".join(parts)}</div>'
