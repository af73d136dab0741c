"""Invoice and credit-note documents: PDF text, localization, UBL 2.1 against the OASIS XSD."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from datetime import date
from decimal import Decimal
from functools import cache
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from pypdf import PdfReader

from kassa.core.money import to_major
from kassa.documents.model import Document, Line, Party, TaxRow
from kassa.documents.pdf import LABELS, render_html, render_pdf
from kassa.documents.ubl import CAC, CBC, NotIssuable, render_ubl
from kassa.invoicing.documents import describe
from kassa.pricing.rules import parse_charge
from tests.einvoice import assert_valid_ubl, fatal

UBL_XSD = Path(__file__).resolve().parent.parent / "data" / "ubl-2.1" / "maindoc"
NS = {"cac": CAC, "cbc": CBC}
REVERSE_CHARGE = "Reverse charge: VAT to be accounted for by the recipient (Article 196)"

SELLER = Party(
    name="Wolkenwerk GmbH",
    address={"line1": "Torstraße 118", "city": "Berlin", "postal_code": "10119", "country": "DE"},
    tax_id="DE812345678",
    email="billing@wolkenwerk.example",
)
BUYER = Party(
    name="Alpenblick Software GmbH",
    address={"line1": "Mariahilfer Straße 47", "city": "Wien", "postal_code": "1060",
             "country": "AT"},
    tax_id="ATU12345678",
)  # fmt: skip


def line(amount: int, category: str = "S", rate: str = "19", **kw: Any) -> Line:
    values: dict[str, Any] = {
        "description": "Scale plan",
        "quantity": Decimal(1),
        "unit_amount": Decimal(amount).scaleb(-2),
        "amount": amount,
        "tax_category": category,
        "tax_rate": Decimal(rate),
    }
    return Line(**(values | kw))


def document(lines: list[Line], taxes: list[TaxRow], discount: int = 0, **kw: Any) -> Document:
    """A consistent document: the totals follow from lines, taxes and discount."""
    lines_sum = sum(item.amount for item in lines)
    in_lines = kw.pop("discount_in_lines", False)
    subtotal = lines_sum + discount if in_lines else lines_sum
    tax_total = sum(row.amount for row in taxes)
    total = subtotal - discount + tax_total
    paid = kw.pop("amount_paid", 0)
    credit = kw.pop("credit_applied", 0)
    values: dict[str, Any] = {
        "kind": "invoice",
        "number": "INV-2026-0042",
        "issue_date": date(2026, 4, 1),
        "due_date": date(2026, 4, 15),
        "currency": "eur",
        "locale": "en",
        "seller": SELLER,
        "buyer": BUYER,
        "lines": lines,
        "taxes": taxes,
        "subtotal": subtotal,
        "discount": discount,
        "tax_total": tax_total,
        "total": total,
        "amount_paid": paid,
        "credit_applied": credit,
        "amount_due": total - paid - credit,
        "period_start": date(2026, 3, 1),
        "period_end": date(2026, 3, 31),
    }
    return Document(**(values | kw))


def standard_invoice(**kw: Any) -> Document:
    """19 % and 7 % lines, a document-level discount of 0.82 €, 100 € paid: 1,255.67 € in total."""
    lines = [
        line(100_000, description="Scale plan — March", period_start=date(2026, 3, 1),
             period_end=date(2026, 3, 31)),
        line(3_800, quantity=Decimal(950_000), unit_amount=Decimal("0.00004"),
             description="API calls"),
        line(2_000, rate="7", description="Printed manual"),
    ]  # fmt: skip
    # 1,058.00 € net − 0.82 € discount = 1,057.18 €; per rate: 19 % of 1,037.40 and 7 % of 19.78
    taxes = [
        TaxRow(category="S", rate=Decimal(19), taxable_amount=103_740, amount=19_711),
        TaxRow(category="S", rate=Decimal(7), taxable_amount=1_978, amount=138),
    ]
    return document(lines, taxes, discount=82, amount_paid=10_000, **kw)


def reverse_charge_invoice(**kw: Any) -> Document:
    lines = [line(49_000, "AE", "0"), line(-9_800, "AE", "0", description="Coupon LAUNCH20")]
    taxes = [TaxRow(category="AE", rate=Decimal(0), taxable_amount=39_200, amount=0)]
    return document(lines, taxes, discount=9_800, discount_in_lines=True,
                    notes=[REVERSE_CHARGE], **kw)  # fmt: skip


def pdf_text(doc: Document) -> str:
    pdf = render_pdf(doc)
    assert pdf.startswith(b"%PDF-")
    text = " ".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)
    # Babel separates with no-break and narrow no-break spaces; lines wrap anywhere.
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ").replace("\u202f", " "))


@cache
def schema(name: str) -> Any:
    return etree.XMLSchema(etree.parse(str(UBL_XSD / f"UBL-{name}-2.1.xsd")))


def valid_ubl(doc: Document) -> Any:
    """The rendered UBL, parsed, after checking it against the OASIS schema and the EN 16931
    rules (``tests.einvoice``: no fatal assertion, and none of the warnings Kassa avoids)."""
    xml = render_ubl(doc)
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    tree, warnings = assert_valid_ubl(xml)
    assert "UBL-CR-681" not in {w.id for w in warnings}
    return tree


def texts(tree: Any, path: str) -> list[str]:
    return [element.text for element in tree.xpath(path, namespaces=NS)]


def amount(tree: Any, path: str) -> Decimal:
    found = tree.xpath(path, namespaces=NS)
    return Decimal(found[0].text) if found else Decimal(0)


def assert_en16931_sums(tree: Any) -> None:
    """BR-CO-10, -13, -14, -15, -16: the totals agree with the lines and tax breakdown."""
    total = "cac:LegalMonetaryTotal/cbc:"
    lines = sum(Decimal(t) for t in texts(tree, "cac:*[cbc:ID]/cbc:LineExtensionAmount"))
    assert amount(tree, total + "LineExtensionAmount") == lines
    allowances = sum(Decimal(t) for t in texts(tree, "cac:AllowanceCharge/cbc:Amount"))
    assert amount(tree, total + "AllowanceTotalAmount") == allowances
    exclusive = amount(tree, total + "TaxExclusiveAmount")
    assert exclusive == lines - allowances
    tax = amount(tree, "cac:TaxTotal/cbc:TaxAmount")
    assert tax == sum(Decimal(t) for t in texts(tree, "cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount"))
    assert exclusive == sum(
        Decimal(t) for t in texts(tree, "cac:TaxTotal/cac:TaxSubtotal/cbc:TaxableAmount")
    )
    inclusive = amount(tree, total + "TaxInclusiveAmount")
    assert inclusive == exclusive + tax
    prepaid = amount(tree, total + "PrepaidAmount")
    assert amount(tree, total + "PayableAmount") == inclusive - prepaid


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_carries_what_an_invoice_needs() -> None:
    text = pdf_text(standard_invoice())

    for expected in [
        "Invoice", "INV-2026-0042", "Issue date Apr 1, 2026", "Due date Apr 15, 2026",
        "Billing period Mar 1 – 31, 2026",
        "Wolkenwerk GmbH", "Torstraße 118", "10119 Berlin", "Germany", "VAT ID: DE812345678",
        "Alpenblick Software GmbH", "1060 Wien", "Austria", "VAT ID: ATU12345678",
        "Scale plan — March", "€1,000.00", "950,000", "€0.00004", "€38.00", "19%",
        "Subtotal €1,058.00", "Discount -€0.82", "Tax €198.49",
        "Standard rate 19% €1,037.40 €197.11", "Standard rate 7% €19.78 €1.38",
        "Total €1,255.67", "Amount paid -€100.00", "Amount due €1,155.67",
    ]:  # fmt: skip
        assert expected in text, expected


def test_pdf_reverse_charge_shows_note_and_category() -> None:
    text = pdf_text(reverse_charge_invoice())

    assert REVERSE_CHARGE in text
    assert "Reverse charge 0% €392.00 €0.00" in text
    assert "Coupon LAUNCH20" in text and "-€98.00" in text
    # The coupon is one of the lines, so "Subtotal" is their sum and no discount row repeats it.
    assert "Subtotal €392.00" in text and "Discount" not in text
    assert "Total €392.00" in text and "Amount due €392.00" in text


def test_pdf_german_locale() -> None:
    row = TaxRow(category="S", rate=Decimal(19), taxable_amount=103_744, amount=19_711)
    text = pdf_text(document([line(103_744)], [row], locale="de_DE"))

    assert "Rechnung" in text
    assert "Gesamtbetrag 1.234,55 €" in text
    assert "Zu zahlen 1.234,55 €" in text
    assert "Normalsatz 19 % 1.037,44 € 197,11 €" in text
    assert "Ausstellungsdatum 01.04.2026" in text
    assert "Österreich" in text and "USt-IdNr.: ATU12345678" in text


def test_pdf_french_credit_note() -> None:
    doc = dataclasses.replace(
        standard_invoice(), kind="credit_note", locale="fr", billing_reference="INV-2026-0007"
    )
    text = pdf_text(doc)

    assert "Avoir" in text and "Facture d’origine INV-2026-0007" in text
    assert "Total TTC 1 255,67 €" in text


def test_unknown_language_falls_back_to_english_labels_with_local_numbers() -> None:
    html = render_html(dataclasses.replace(standard_invoice(), locale="nl_NL"))

    assert "Amount due" in html
    assert "€\u00a01.155,67" in html


@pytest.mark.parametrize(
    ("currency", "minor", "shown"),
    [("jpy", 120_000, "¥120,000"), ("bhd", 1_250, "BHD 1.250"), ("eur", 1_250, "€12.50")],
)
def test_pdf_currency_decimals(currency: str, minor: int, shown: str) -> None:
    doc = document(
        [line(minor, "Z", "0", unit_amount=to_major(minor, currency))],
        [TaxRow(category="Z", rate=Decimal(0), taxable_amount=minor, amount=0)],
        currency=currency,
    )
    text = pdf_text(doc)

    assert f"Total {shown}" in text
    assert f"Amount due {shown}" in text


def test_empty_document_renders() -> None:
    doc = document([], [])

    text = pdf_text(doc)
    assert "No items" in text and "Total €0.00" in text and "Amount due €0.00" in text
    # The UBL 2.1 schema (and EN 16931 BR-16) require at least one line.
    with pytest.raises(ValueError, match="at least one line"):
        render_ubl(doc)


def test_html_escapes_every_value_and_loads_nothing() -> None:
    evil = Party(name='<script>alert("x")</script> & Sons', address={"city": "<b>Town</b>"})
    doc = dataclasses.replace(
        standard_invoice(), buyer=evil, notes=["<img src=x onerror=alert(1)>"],
        payment_instructions="Pay to <a href='http://evil'>here</a>",
    )  # fmt: skip
    html = render_html(doc)

    assert "<script>" not in html and "<img" not in html and "<a " not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Sons" in html
    assert "&lt;b&gt;Town&lt;/b&gt;" in html
    assert not re.search(r"<[^>]*\b(src|href)=|url\(|@import", html)


CJK = "東京電力株式会社 서울전력 北京电费"


def _glyph_chars(pdf: bytes) -> tuple[set[str], set[str]]:
    """(characters drawn with a real glyph, characters drawn with .notdef), from each
    embedded font's ToUnicode map: glyph 0 is .notdef, the empty box."""
    drawn: set[str] = set()
    missing: set[str] = set()
    for page in PdfReader(BytesIO(pdf)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descendant = font["/DescendantFonts"][0].get_object()
            descriptor = descendant["/FontDescriptor"].get_object()
            assert {"/FontFile", "/FontFile2", "/FontFile3"} & set(descriptor), "not embedded"
            cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
            for code, text in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", cmap):
                chars = bytes.fromhex(text).decode("utf-16-be")
                (missing if int(code, 16) == 0 else drawn).update(chars)
    return drawn, missing


def test_cjk_text_prints_with_glyphs_not_empty_boxes() -> None:
    buyer = Party(name="東京電力株式会社", address={"city": "東京都", "country": "JP"})
    doc = dataclasses.replace(
        standard_invoice(), buyer=buyer, notes=[CJK], locale="ja_JP", payment_instructions=CJK
    )
    pdf = render_pdf(doc)
    text = " ".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)
    assert "東京電力株式会社" in text and "서울전력" in text and "北京电费" in text
    drawn, missing = _glyph_chars(pdf)
    wanted = set(CJK.replace(" ", ""))
    assert wanted <= drawn, sorted(wanted - drawn)
    assert not wanted & missing


def test_template_ships_as_package_data() -> None:
    assert files("kassa.documents").joinpath("templates", "invoice.html").is_file()


def test_labels_complete_in_every_language() -> None:
    for language, labels in LABELS.items():
        assert labels.keys() == LABELS["en"].keys(), language


# --- UBL -------------------------------------------------------------------------------------


def test_ubl_invoice_is_valid_en16931() -> None:
    tree = valid_ubl(standard_invoice())

    assert tree.tag == "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice"
    assert texts(tree, "cbc:CustomizationID") == ["urn:cen.eu:en16931:2017"]
    assert texts(tree, "cbc:ID") == ["INV-2026-0042"]
    assert texts(tree, "cbc:IssueDate") == ["2026-04-01"]
    assert texts(tree, "cbc:DueDate") == ["2026-04-15"]
    assert texts(tree, "cbc:InvoiceTypeCode") == ["380"]
    assert texts(tree, "cbc:DocumentCurrencyCode") == ["EUR"]
    assert texts(tree, "cac:InvoicePeriod/cbc:*") == ["2026-03-01", "2026-03-31"]
    seller = "cac:AccountingSupplierParty/cac:Party/"
    assert texts(tree, seller + "cac:PartyName/cbc:Name") == ["Wolkenwerk GmbH"]
    assert texts(tree, seller + "cac:PostalAddress/cac:Country/cbc:IdentificationCode") == ["DE"]
    assert texts(tree, seller + "cac:PartyTaxScheme/cbc:CompanyID") == ["DE812345678"]
    assert texts(tree, seller + "cac:PartyTaxScheme/cac:TaxScheme/cbc:ID") == ["VAT"]
    assert texts(tree, seller + "cac:PartyLegalEntity/cbc:RegistrationName") == ["Wolkenwerk GmbH"]
    buyer = "cac:AccountingCustomerParty/cac:Party/"
    assert texts(tree, buyer + "cac:PartyTaxScheme/cbc:CompanyID") == ["ATU12345678"]

    # The document-level discount is an allowance per tax rate: 0.82 € = 0.60 € + 0.22 €.
    assert texts(tree, "cac:AllowanceCharge/cbc:ChargeIndicator") == ["false", "false"]
    assert texts(tree, "cac:AllowanceCharge/cbc:Amount") == ["0.60", "0.22"]
    assert texts(tree, "cac:AllowanceCharge/cac:TaxCategory/cbc:Percent") == ["19", "7"]
    totals = "cac:LegalMonetaryTotal/cbc:"
    assert texts(tree, totals + "*") == [
        "1058.00", "1057.18", "1255.67", "0.82", "100.00", "1155.67"
    ]  # fmt: skip
    assert texts(tree, "cac:TaxTotal/cac:TaxSubtotal/cbc:TaxAmount") == ["197.11", "1.38"]
    assert [e.get("currencyID") for e in tree.xpath("//cbc:TaxAmount", namespaces=NS)] == [
        "EUR"
    ] * 3
    assert_en16931_sums(tree)

    api = tree.xpath("cac:InvoiceLine[2]", namespaces=NS)[0]
    assert texts(api, "cbc:ID") == ["2"]
    assert texts(api, "cbc:InvoicedQuantity") == ["950000"]
    assert api.find("cbc:InvoicedQuantity", NS).get("unitCode") == "C62"
    assert texts(api, "cbc:LineExtensionAmount") == ["38.00"]
    assert texts(api, "cac:Item/cbc:Name") == ["API calls"]
    assert texts(api, "cac:Item/cac:ClassifiedTaxCategory/cbc:*") == ["S", "19"]
    assert texts(api, "cac:Price/cbc:PriceAmount") == ["0.00004"]
    assert texts(tree, "cac:InvoiceLine[1]/cac:InvoicePeriod/cbc:*") == [
        "2026-03-01", "2026-03-31"
    ]  # fmt: skip


def test_ubl_reverse_charge_with_coupon_line() -> None:
    tree = valid_ubl(reverse_charge_invoice(payment_account="DE89 3704 0044 0532 0130 00"))

    assert texts(tree, "cbc:Note") == [REVERSE_CHARGE]
    category = "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:"
    assert texts(tree, category + "ID") == ["AE"]
    assert texts(tree, category + "TaxExemptionReasonCode") == ["VATEX-EU-AE"]
    assert texts(tree, category + "TaxExemptionReason") == ["Reverse charge"]
    # The coupon is already a line: no allowance on top (BR-CO-13), and a negative line has a
    # negative quantity, never a negative price (BR-27).
    assert tree.xpath("cac:AllowanceCharge|//cbc:AllowanceTotalAmount", namespaces=NS) == []
    coupon = tree.xpath("cac:InvoiceLine[2]", namespaces=NS)[0]
    assert texts(coupon, "cbc:InvoicedQuantity") == ["-1"]
    assert texts(coupon, "cbc:LineExtensionAmount") == ["-98.00"]
    assert texts(coupon, "cac:Price/cbc:PriceAmount") == ["98.00"]
    assert texts(tree, "cac:PaymentMeans/cbc:PaymentMeansCode") == ["58"]
    assert texts(tree, "cac:PaymentMeans/cac:PayeeFinancialAccount/cbc:ID") == [
        "DE89370400440532013000"
    ]
    assert_en16931_sums(tree)


def test_ubl_credit_note_is_valid() -> None:
    doc = dataclasses.replace(
        standard_invoice(), kind="credit_note", number="CN-2026-0003",
        billing_reference="INV-2026-0042", payment_instructions="Refunded to your card.",
    )  # fmt: skip
    tree = valid_ubl(doc)

    assert tree.tag == "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote"
    assert texts(tree, "cbc:CreditNoteTypeCode") == ["381"]
    assert tree.xpath("cbc:DueDate", namespaces=NS) == []
    assert texts(tree, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == [
        "INV-2026-0042"
    ]
    # A credit note's due date lives in PaymentMeans; without an account the instrument is "1".
    assert texts(tree, "cac:PaymentMeans/cbc:*") == ["1", "2026-04-15"]
    # free-text payment terms are EN 16931's BT-20, not PaymentMeans/InstructionNote
    assert texts(tree, "cac:PaymentTerms/cbc:Note") == ["Refunded to your card."]
    assert texts(tree, "cac:CreditNoteLine/cbc:CreditedQuantity") == ["1", "950000", "1"]
    assert tree.xpath("cac:InvoiceLine", namespaces=NS) == []
    assert_en16931_sums(tree)


@pytest.mark.parametrize(
    ("currency", "unit", "minor", "shown", "zero"),
    [("jpy", "1200", 1_200, "1200", "0"), ("eur", "12.5", 1_250, "12.50", "0.00")],
)
def test_ubl_amounts_use_the_currency_exponent(
    currency: str, unit: str, minor: int, shown: str, zero: str
) -> None:
    doc = document(
        [line(minor, "Z", "0", unit_amount=Decimal(unit))],
        [TaxRow(category="Z", rate=Decimal(0), taxable_amount=minor, amount=0)],
        currency=currency,
    )
    tree = valid_ubl(doc)

    assert texts(tree, "cac:LegalMonetaryTotal/cbc:PayableAmount") == [shown]
    assert texts(tree, "cac:InvoiceLine/cbc:LineExtensionAmount") == [shown]
    assert texts(tree, "cac:InvoiceLine/cac:Price/cbc:PriceAmount") == [unit]
    assert texts(tree, "cac:TaxTotal/cbc:TaxAmount") == [zero]
    assert {e.get("currencyID") for e in tree.xpath("//*[@currencyID]")} == {currency.upper()}


def test_ubl_refuses_a_three_decimal_currency() -> None:
    # EN 16931 allows two decimals (BR-DEC-*, UBL-DT-01): 1.250 BHD is refused, not rounded.
    doc = document(
        [line(1_250, "Z", "0", unit_amount=Decimal("1.25"))],
        [TaxRow(category="Z", rate=Decimal(0), taxable_amount=1_250, amount=0)],
        currency="bhd",
    )
    with pytest.raises(NotIssuable) as refused:
        render_ubl(doc)
    assert [p.field for p in refused.value.problems] == ["currency"]
    # what writing it anyway gave: fatal errors
    forced = dataclasses.replace(doc, currency="eur")
    assert fatal(render_ubl(forced)) == []


def test_ubl_outside_scope_has_no_rate() -> None:
    doc = document(
        [line(5_000, "O", "0")],
        [TaxRow(category="O", rate=Decimal(0), taxable_amount=5_000, amount=0)],
    )
    tree = valid_ubl(doc)

    assert tree.xpath("//cbc:Percent", namespaces=NS) == []
    assert texts(tree, "//cbc:TaxExemptionReasonCode") == ["VATEX-EU-O"]


# --- Model -----------------------------------------------------------------------------------


def test_model_rejects_totals_that_do_not_add_up() -> None:
    doc = standard_invoice()
    with pytest.raises(ValueError, match="total"):
        dataclasses.replace(doc, total=doc.total + 1)
    with pytest.raises(ValueError, match="tax_total"):
        dataclasses.replace(doc, tax_total=doc.tax_total + 1, total=doc.total + 1)
    with pytest.raises(ValueError, match="lines sum"):
        dataclasses.replace(doc, lines=doc.lines[1:])
    with pytest.raises(ValueError, match="currency"):
        dataclasses.replace(doc, currency="EUR")


def test_model_rejects_floats_and_unknown_categories() -> None:
    with pytest.raises(ValueError, match="quantity"):
        line(100, quantity=1.5)
    with pytest.raises(ValueError, match="category"):
        line(100, "X", "0")
    with pytest.raises(ValueError, match="period"):
        line(100, period_start=date(2026, 3, 2), period_end=date(2026, 3, 1))


def test_model_is_immutable() -> None:
    items = [line(100)]
    doc = document(items, [TaxRow(category="S", rate=Decimal(19), taxable_amount=100, amount=19)])
    items.append(line(5))

    assert len(doc.lines) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        doc.total = 0  # type: ignore[misc]


def test_docs_sample_is_current_and_valid() -> None:
    # docs/samples/invoice-sample.xml is what scripts/render_samples.py renders today
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("samples", root / "scripts/render_samples.py")
    assert spec is not None and spec.loader is not None
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)
    xml = (root / "docs/samples/invoice-sample.xml").read_bytes()
    assert xml == render_ubl(samples.sample_invoice())
    assert_valid_ubl(xml)


def test_ubl_tax_ids_without_country_prefix_are_not_vat_ids() -> None:
    # BR-CO-09: an Australian seller's ABN and a US buyer's EIN carry no ISO prefix
    seller = dataclasses.replace(SELLER, tax_id="51 824 753 556")
    buyer = Party(
        name="Acme Inc.", address={"city": "Austin", "country": "US"}, tax_id="12-3456789"
    )
    doc = document(
        [line(5_000, "S", "10")],
        [TaxRow(category="S", rate=Decimal(10), taxable_amount=5_000, amount=500)],
        seller=seller,
        buyer=buyer,
        currency="aud",
    )
    tree = valid_ubl(doc)
    assert tree.xpath("//cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']", namespaces=NS) == []
    party = "cac:AccountingSupplierParty/cac:Party/"
    assert texts(tree, party + "cac:PartyTaxScheme/cbc:CompanyID") == ["51824753556"]
    assert texts(tree, party + "cac:PartyTaxScheme/cac:TaxScheme/cbc:ID") == ["TAX"]
    assert texts(tree, party + "cac:PartyIdentification/cbc:ID") == ["51824753556"]
    buyer_path = "cac:AccountingCustomerParty/cac:Party/cac:PartyLegalEntity/cbc:CompanyID"
    assert texts(tree, buyer_path) == ["12-3456789"]
    text = pdf_text(doc)
    assert "Tax ID: 12-3456789" in text and "VAT ID: 12-3456789" not in text


def test_ubl_refuses_what_en16931_requires_and_names_it() -> None:
    seller = dataclasses.replace(SELLER, tax_id=None)
    buyer = Party(name="Walk-in", address={})
    doc = document(
        [line(1_000)],
        [TaxRow(category="S", rate=Decimal(19), taxable_amount=1_000, amount=190)],
        seller=seller,
        buyer=buyer,
    )
    with pytest.raises(NotIssuable) as refused:
        render_ubl(doc)
    assert [(p.field, p.rule) for p in refused.value.problems] == [
        ("seller.tax_id", "BR-S-02"),
        ("buyer.address", "BR-10"),
    ]


def test_whole_priced_line_keeps_its_quantity() -> None:
    usage = line(
        1_560,
        quantity=Decimal(101),
        unit_amount=Decimal("15.60"),
        base_quantity=Decimal(101),
        unit="kWh",
        description="Energy",
        pricing="graduated: 100 × €0.125 + 1 × €0.10 + €3.00",
    )
    doc = document(
        [usage], [TaxRow(category="S", rate=Decimal(19), taxable_amount=1_560, amount=296)]
    )
    tree = valid_ubl(doc)
    assert texts(tree, "cac:InvoiceLine/cbc:InvoicedQuantity") == ["101"]
    assert texts(tree, "cac:InvoiceLine/cac:Price/cbc:BaseQuantity") == ["101"]
    assert texts(tree, "cac:InvoiceLine/cac:Item/cbc:Description") == [usage.pricing]
    text = pdf_text(doc)
    assert "101 kWh" in text and "graduated: 100 × €0.125 + 1 × €0.10 + €3.00" in text


@pytest.mark.parametrize(
    ("model", "properties", "units", "text"),
    [
        (
            "volume",
            {
                "tiers": [
                    {"up_to": 100, "unit_amount": "12.5"},
                    {"up_to": None, "unit_amount": "10", "flat_amount": 300},
                ]
            },
            "101",
            "volume: 101 × €0.10 + €3.00",
        ),
        (
            "package",
            {"package_size": 10, "package_amount": 500, "free_units": 5},
            "101",
            "package: 10 × 10 at €5.00 (5 free)",
        ),
        ("per_unit", {"unit_amount": "2"}, "101", None),
    ],
)
def test_usage_pricing_is_described_for_people(
    model: str, properties: dict[str, Any], units: str, text: str | None
) -> None:
    charge = parse_charge("mtr_1", model, properties, None)
    assert describe(charge, Decimal(units), "eur", "en") == text
