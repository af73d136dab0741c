"""EN 16931 e-invoices in the UBL 2.1 syntax: ``Invoice`` (type 380) and ``CreditNote`` (381).

Elements are written in the order of the OASIS UBL 2.1 schema sequences (an XSD validates
order, not just presence). Amounts carry the currency's own number of decimals ("12.50" EUR,
"1200" JPY); EN 16931 allows at most two (BR-DEC-*, UBL-DT-01), so a currency with three
(BHD, KWD, ...) cannot be issued as an EN 16931 e-invoice: :func:`problems` says so and
:func:`render_ubl` refuses. A discount given as negative lines stays in the lines (EN 16931
allows negative line amounts); a document-level discount becomes ``AllowanceCharge``
elements, one per tax category and rate, so that the EN 16931 sums (BR-CO-10 to BR-CO-16) hold.

Identifiers of the parties (see ``docs/einvoicing.md``): a tax id with an ISO 3166-1 country
prefix is a VAT identifier (BT-31 seller, BT-48 buyer), except on a document "not subject to
VAT" (category O), which must carry none (BR-O-02). Any other tax id (a US EIN, an Australian
ABN, or a VAT id on an O document) is written as the seller's tax registration identifier
(BT-32) and seller identifier (BT-29, so BR-CO-26 holds), or as the buyer's legal registration
identifier (BT-47): never as a VAT identifier without its country prefix (BR-CO-09).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from lxml import etree

from kassa.core.money import exponent, to_major
from kassa.documents.model import Document, Line, Party, TaxRow

INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017"

INVOICE_TYPE_CODE = "380"  # UNCL1001 commercial invoice
CREDIT_NOTE_TYPE_CODE = "381"  # UNCL1001 credit note
UNIT_CODE = "C62"  # UN/ECE Rec. 20 "one": a plain count
DISCOUNT_REASON_CODE = "95"  # UNCL5189 discount

# UNCL4461 payment means. 30 and 58 require the payee's account (BR-61); a credit note whose
# due date must be written (it lives in PaymentMeans) but with no account says "1".
SEPA_CREDIT_TRANSFER = "58"
CREDIT_TRANSFER = "30"
INSTRUMENT_NOT_DEFINED = "1"
TAX_REGISTRATION_SCHEME = "TAX"  # BT-32: a PartyTaxScheme that is not VAT
MAX_DECIMALS = 2  # EN 16931 amounts (BR-DEC-*, UBL-DT-01)

# The prefixes BR-CO-09 accepts on a VAT identifier: ISO 3166-1 alpha-2, plus "EL" (Greece),
# "XI" (Northern Ireland) and "1A" (Kosovo), as listed in the rule itself (EN 16931 1.3.16).
VAT_PREFIXES = frozenset(
    """1A AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH EL ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP
    KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS
    MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS
    PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC
    TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XI
    YE YT ZA ZM ZW""".split()
)

# Categories that carry no VAT must say why (BR-AE-10, BR-E-10, BR-IC-10, BR-G-10, BR-O-10):
# the VATEX code where one code fits the whole category, and a text.
EXEMPTION_REASONS: dict[str, tuple[str | None, str]] = {
    "AE": ("VATEX-EU-AE", "Reverse charge"),
    "E": (None, "Exempt from VAT"),
    "K": ("VATEX-EU-IC", "Intra-Community supply"),
    "G": ("VATEX-EU-G", "Export outside the EU"),
    "O": ("VATEX-EU-O", "Not subject to VAT"),
}
_NO_RATE = frozenset({"O"})  # BR-O-05, BR-O-06: category O carries no rate at all
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")

_Element = Any  # lxml ships no type information


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a document cannot be issued as an EN 16931 e-invoice. ``field`` names the party
    field (``seller.tax_id``, ``buyer.address``) or the document field (``currency``)."""

    field: str
    message: str
    rule: str  # the EN 16931 rule it would break


class NotIssuable(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


def problems(
    seller: Party, buyer: Party, currency: str, categories: set[str], *, lines: int
) -> list[Problem]:
    """What keeps a document of these parties, currency, tax categories and number of lines
    from being a valid EN 16931 e-invoice (empty: it can be issued)."""
    found = []
    if exponent(currency) > MAX_DECIMALS:
        found.append(
            Problem(
                "currency",
                f"{currency.upper()} amounts have {exponent(currency)} decimals; "
                f"EN 16931 allows at most {MAX_DECIMALS}",
                "BR-DEC-09",
            )
        )
    if lines == 0:
        found.append(Problem("lines", "an e-invoice needs at least one line", "BR-16"))
    if not seller.tax_id:
        found.append(
            Problem(
                "seller.tax_id",
                "the seller's VAT or tax registration identifier is required",
                "BR-CO-26" if categories <= {"O"} else "BR-S-02",
            )
        )
    if not seller.address.get("country"):
        found.append(Problem("seller.address.country", "the seller's country is required", "BR-9"))
    if not any(buyer.address.values()):
        found.append(Problem("buyer.address", "the buyer's postal address is required", "BR-10"))
    elif not buyer.address.get("country"):
        found.append(Problem("buyer.address.country", "the buyer's country is required", "BR-11"))
    if "AE" in categories and not buyer.tax_id:
        found.append(
            Problem(
                "buyer.tax_id",
                "a reverse-charge invoice needs the buyer's VAT identifier",
                "BR-AE-02",
            )
        )
    return found


def is_vat_id(tax_id: str) -> bool:
    """Whether ``tax_id`` can be written as a VAT identifier: it starts with a country prefix
    (BR-CO-09) followed by at least two more characters."""
    text = "".join(tax_id.split()).upper()
    return len(text) >= 4 and text[:2] in VAT_PREFIXES


def render_ubl(doc: Document) -> bytes:
    """The document as EN 16931 UBL 2.1 XML (UTF-8, with an XML declaration).

    Raises :class:`NotIssuable` (a ``ValueError``) when :func:`problems` finds any: a document
    without lines (UBL 2.1 and BR-16 require one; the PDF renders without), a currency with
    more than two decimals, a party without what EN 16931 requires.
    """
    categories = {line.tax_category for line in doc.lines} | {row.category for row in doc.taxes}
    found = problems(doc.seller, doc.buyer, doc.currency, categories, lines=len(doc.lines))
    if found:
        raise NotIssuable(found)
    invoice = doc.kind == "invoice"
    ns = INVOICE_NS if invoice else CREDIT_NOTE_NS
    root = etree.Element(
        f"{{{ns}}}{'Invoice' if invoice else 'CreditNote'}",
        nsmap={None: ns, "cac": CAC, "cbc": CBC},
    )
    out = _Writer(doc.currency)
    # BR-O-02: a document with a line not subject to VAT carries no VAT identifiers.
    vat_ids = "O" not in categories

    _cbc(root, "CustomizationID", CUSTOMIZATION_ID)
    _cbc(root, "ID", doc.number)
    _cbc(root, "IssueDate", doc.issue_date.isoformat())
    if invoice:
        if doc.due_date is not None:
            _cbc(root, "DueDate", doc.due_date.isoformat())
        _cbc(root, "InvoiceTypeCode", INVOICE_TYPE_CODE)
    else:
        _cbc(root, "CreditNoteTypeCode", CREDIT_NOTE_TYPE_CODE)
    for note in doc.notes:
        _cbc(root, "Note", note)
    _cbc(root, "DocumentCurrencyCode", doc.currency.upper())
    if doc.buyer_reference:
        _cbc(root, "BuyerReference", doc.buyer_reference)
    _period(root, doc.period_start, doc.period_end)
    if doc.billing_reference:
        reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
        _cbc(reference, "ID", doc.billing_reference)
    _party(_cac(root, "AccountingSupplierParty"), doc.seller, seller=True, vat_ids=vat_ids)
    _party(_cac(root, "AccountingCustomerParty"), doc.buyer, seller=False, vat_ids=vat_ids)
    _payment_means(root, doc)
    if doc.payment_instructions:
        _cbc(_cac(root, "PaymentTerms"), "Note", doc.payment_instructions)  # BT-20
    if doc.discount and not doc.lines_include_discount:
        for category, rate, amount in _allowances(doc):
            _allowance(root, out, category, rate, amount)
    _tax_total(root, out, doc)
    _monetary_total(root, out, doc)
    for position, line in enumerate(doc.lines, start=1):
        _line(root, out, line, position, invoice)

    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


class _Writer:
    """Amounts of one currency."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.code = currency.upper()

    def amount(self, parent: _Element, name: str, minor: int) -> None:
        _cbc(parent, name, _decimal(to_major(minor, self.currency)), currencyID=self.code)

    def major(self, parent: _Element, name: str, value: Decimal) -> None:
        _cbc(parent, name, _decimal(value), currencyID=self.code)


# What XML 1.0 cannot carry at all, not even as a character reference (its ``Char``
# production): C0 controls other than tab, LF and CR, surrogates, U+FFFE and U+FFFF. The API
# stores them in names, addresses and descriptions (only U+0000 is refused), and lxml raises
# on them (a 500 for every e-invoice of such a customer); they print as nothing, so they are
# left out of the document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _cbc(parent: _Element, name: str, text: str, **attributes: str) -> _Element:
    safe = {key: _xml_text(value) for key, value in attributes.items()}
    element = etree.SubElement(parent, f"{{{CBC}}}{name}", safe)
    element.text = _xml_text(text)
    return element


def _cac(parent: _Element, name: str) -> _Element:
    return etree.SubElement(parent, f"{{{CAC}}}{name}")


def _decimal(value: Decimal) -> str:
    """Plain decimal notation, never an exponent, never "-0"."""
    if value.is_zero():
        value = abs(value)
    return format(value, "f")


def _period(parent: _Element, start: date | None, end: date | None) -> None:
    if start is None and end is None:
        return
    period = _cac(parent, "InvoicePeriod")
    if start is not None:
        _cbc(period, "StartDate", start.isoformat())
    if end is not None:
        _cbc(period, "EndDate", end.isoformat())


def _party(parent: _Element, party: Party, *, seller: bool, vat_ids: bool) -> None:
    element = _cac(parent, "Party")
    if party.email:
        _cbc(element, "EndpointID", party.email, schemeID="EM")  # EAS code: electronic mail
    tax_id = "".join((party.tax_id or "").split()).upper() or None
    vat = tax_id if tax_id and vat_ids and is_vat_id(tax_id) else None
    other = tax_id if tax_id and not vat else None
    if seller and other:
        _cac_id(element, "PartyIdentification", other)  # BT-29: BR-CO-26 without BT-31
    _cbc(_cac(element, "PartyName"), "Name", party.name)
    address = party.address
    if any(address.get(key) for key in address):
        postal = _cac(element, "PostalAddress")
        for key, name in (
            ("line1", "StreetName"),
            ("line2", "AdditionalStreetName"),
            ("city", "CityName"),
            ("postal_code", "PostalZone"),
            ("state", "CountrySubentity"),
        ):
            if address.get(key):
                _cbc(postal, name, address[key])
        if address.get("country"):
            _cbc(_cac(postal, "Country"), "IdentificationCode", address["country"].upper())
    if vat:
        scheme = _cac(element, "PartyTaxScheme")  # BT-31 / BT-48
        _cbc(scheme, "CompanyID", vat)
        _cbc(_cac(scheme, "TaxScheme"), "ID", "VAT")
    if seller and other:
        scheme = _cac(element, "PartyTaxScheme")  # BT-32
        _cbc(scheme, "CompanyID", other)
        _cbc(_cac(scheme, "TaxScheme"), "ID", TAX_REGISTRATION_SCHEME)
    legal = _cac(element, "PartyLegalEntity")
    _cbc(legal, "RegistrationName", party.name)
    if not seller and other:
        _cbc(legal, "CompanyID", other)  # BT-47
    if party.email:
        _cbc(_cac(element, "Contact"), "ElectronicMail", party.email)


def _cac_id(parent: _Element, name: str, value: str) -> None:
    _cbc(_cac(parent, name), "ID", value)


def _payment_means(parent: _Element, doc: Document) -> None:
    # A credit note has no DueDate of its own: its due date (BT-9) is PaymentMeans/PaymentDueDate.
    due_here = doc.kind == "credit_note" and doc.due_date is not None
    account = "".join((doc.payment_account or "").split()).upper()
    if not (account or due_here):
        return
    if not account:
        code = INSTRUMENT_NOT_DEFINED
    elif doc.currency == "eur" and _IBAN.fullmatch(account):
        code = SEPA_CREDIT_TRANSFER
    else:
        code = CREDIT_TRANSFER
    means = _cac(parent, "PaymentMeans")
    _cbc(means, "PaymentMeansCode", code)
    if due_here and doc.due_date is not None:
        _cbc(means, "PaymentDueDate", doc.due_date.isoformat())
    if doc.kind == "invoice":
        _cbc(means, "PaymentID", doc.number)  # remittance information (BT-83)
    if account:
        financial = _cac(means, "PayeeFinancialAccount")
        _cbc(financial, "ID", account)  # BT-84
        if doc.payment_bic:
            _cac_id(financial, "FinancialInstitutionBranch", doc.payment_bic.upper())  # BT-86


def _allowances(doc: Document) -> list[tuple[str | None, Decimal | None, int]]:
    """The document-level discount per (category, rate): what the lines of each tax row add
    up to beyond its taxable amount. When that does not account for the whole discount (tax
    rows that do not match the lines), one allowance carries it, with the only category there
    is, or none."""
    lines: defaultdict[tuple[str, Decimal], int] = defaultdict(int)
    for line in doc.lines:
        lines[(line.tax_category, line.tax_rate)] += line.amount
    parts = [
        (row.category, row.rate, lines[(row.category, row.rate)] - row.taxable_amount)
        for row in doc.taxes
    ]
    if all(amount >= 0 for *_, amount in parts) and sum(p[2] for p in parts) == doc.discount:
        return [(category, rate, amount) for category, rate, amount in parts if amount]
    if len(doc.taxes) == 1:
        return [(doc.taxes[0].category, doc.taxes[0].rate, doc.discount)]
    return [(None, None, doc.discount)]


def _allowance(
    parent: _Element, out: _Writer, category: str | None, rate: Decimal | None, amount: int
) -> None:
    allowance = _cac(parent, "AllowanceCharge")
    _cbc(allowance, "ChargeIndicator", "false")
    _cbc(allowance, "AllowanceChargeReasonCode", DISCOUNT_REASON_CODE)
    _cbc(allowance, "AllowanceChargeReason", "Discount")
    out.amount(allowance, "Amount", amount)
    if category is not None and rate is not None:
        _tax_category(allowance, "TaxCategory", category, rate)


def _tax_category(
    parent: _Element, name: str, category: str, rate: Decimal, *, reason: bool = False
) -> None:
    element = _cac(parent, name)
    _cbc(element, "ID", category)
    if category not in _NO_RATE:
        _cbc(element, "Percent", _decimal(rate))
    if reason and category in EXEMPTION_REASONS:
        code, text = EXEMPTION_REASONS[category]
        if code:
            _cbc(element, "TaxExemptionReasonCode", code)
        _cbc(element, "TaxExemptionReason", text)
    _cbc(_cac(element, "TaxScheme"), "ID", "VAT")


def _tax_total(parent: _Element, out: _Writer, doc: Document) -> None:
    total = _cac(parent, "TaxTotal")
    out.amount(total, "TaxAmount", doc.tax_total)
    for row in doc.taxes:
        _tax_subtotal(total, out, row)


def _tax_subtotal(parent: _Element, out: _Writer, row: TaxRow) -> None:
    subtotal = _cac(parent, "TaxSubtotal")
    out.amount(subtotal, "TaxableAmount", row.taxable_amount)
    out.amount(subtotal, "TaxAmount", row.amount)
    _tax_category(subtotal, "TaxCategory", row.category, row.rate, reason=True)


def _monetary_total(parent: _Element, out: _Writer, doc: Document) -> None:
    totals = _cac(parent, "LegalMonetaryTotal")
    allowance = 0 if doc.lines_include_discount else doc.discount
    out.amount(totals, "LineExtensionAmount", sum(line.amount for line in doc.lines))
    out.amount(totals, "TaxExclusiveAmount", doc.subtotal - doc.discount)
    out.amount(totals, "TaxInclusiveAmount", doc.total)
    if allowance:
        out.amount(totals, "AllowanceTotalAmount", allowance)
    # Everything already settled (payments, applied credit, earlier credit notes): BR-CO-16.
    prepaid = doc.total - doc.amount_due
    if prepaid:
        out.amount(totals, "PrepaidAmount", prepaid)
    out.amount(totals, "PayableAmount", doc.amount_due)


def _line(parent: _Element, out: _Writer, line: Line, position: int, invoice: bool) -> None:
    element = _cac(parent, "InvoiceLine" if invoice else "CreditNoteLine")
    _cbc(element, "ID", str(position))
    # EN 16931 forbids a negative item price (BR-27): a negative line has a negative quantity.
    quantity, price = line.quantity, line.unit_amount
    if price < 0:
        quantity, price = -quantity, -price
    _cbc(
        element,
        "InvoicedQuantity" if invoice else "CreditedQuantity",
        _decimal(quantity),
        unitCode=UNIT_CODE,
    )
    out.amount(element, "LineExtensionAmount", line.amount)
    _period(element, line.period_start, line.period_end)
    item = _cac(element, "Item")
    if line.pricing:
        _cbc(item, "Description", line.pricing)  # BT-154
    _cbc(item, "Name", line.description)
    _tax_category(item, "ClassifiedTaxCategory", line.tax_category, line.tax_rate)
    price_element = _cac(element, "Price")
    out.major(price_element, "PriceAmount", price)
    if line.base_quantity is not None:
        _cbc(price_element, "BaseQuantity", _decimal(line.base_quantity), unitCode=UNIT_CODE)
