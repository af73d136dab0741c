"""E-invoices through the API: every kind of invoice and credit note Kassa issues passes the
UBL 2.1 XSD and CEN's EN 16931 rules (``tests.einvoice.assert_valid_ubl``), documents show an
invoice as issued, and what EN 16931 cannot express is refused with the fields to fix.

One German organization (eu_vat, VAT id, address, IBAN/BIC) bills, by one-off invoices and a
subscription: a domestic consumer (S 19 %), an Austrian business (reverse charge, AE), a French
consumer (OSS, S 20 %), an exempt customer (E), a US business with an EIN (out of scope, O),
coupons, customer credit applied, partial payment, zero and negative totals, graduated usage.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from kassa.runtime import Runtime
from tests.conftest import Tenant, create, make_customer, make_plan, signup
from tests.einvoice import assert_valid_ubl, fatal

NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}
SELLER = "cac:AccountingSupplierParty/cac:Party/"
BUYER = "cac:AccountingCustomerParty/cac:Party/"
IBAN = "DE89370400440532013000"


def ok(response: Any, *codes: int) -> dict[str, Any]:
    assert response.status_code in (codes or (200,)), response.text
    return dict(response.json())


def ubl(client: TestClient, tenant: Tenant, path: str) -> tuple[bytes, Any]:
    response = client.get(f"{path}/ubl", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    tree, _warnings = assert_valid_ubl(response.content)
    return response.content, tree


def texts(tree: Any, path: str) -> list[str]:
    return [e.text for e in tree.xpath(path, namespaces=NS)]


def one_off(
    client: TestClient, tenant: Tenant, customer: str, *amounts: int, **body: Any
) -> dict[str, Any]:
    lines = [{"description": f"Item {i}", "unit_amount": a} for i, a in enumerate(amounts, 1)]
    return create(
        client,
        tenant,
        "/v1/invoices",
        {"customer": customer, "lines": lines, "auto_finalize": True, **body},
    )


def note(client: TestClient, tenant: Tenant, invoice: str, amount: int) -> dict[str, Any]:
    return create(
        client,
        tenant,
        "/v1/credit_notes",
        {"invoice": invoice, "amount": amount, "reason": "order_change"},
    )


def pdf_text(client: TestClient, tenant: Tenant, path: str) -> str:
    response = client.get(f"{path}/pdf", headers=tenant.headers)
    assert response.status_code == 200, response.text
    pages = PdfReader(io.BytesIO(response.content)).pages
    return " ".join(" ".join(page.extract_text().split()) for page in pages).replace("\xa0", " ")


@pytest.fixture(scope="module")
def seller(client: TestClient) -> Tenant:
    tenant = signup(client, name="Netzwerk Strom GmbH")
    ok(
        client.patch(
            "/v1/org",
            headers=tenant.headers,
            json={
                "country": "DE",
                "tax_ruleset": "eu_vat",
                "tax_id": "DE123456789",
                "invoice_prefix": "NWS",
                "invoice_grace_seconds": 0,
                "address": {
                    "line1": "Hauptstr. 1",
                    "city": "Berlin",
                    "postal_code": "10115",
                    "country": "DE",
                },
                "payment_instructions": "Please quote the invoice number.",
                "iban": "DE89 3704 0044 0532 0130 00",
                "bic": "cobadeffxxx",
            },
        )
    )
    return tenant


def customer(client: TestClient, tenant: Tenant, country: str, **body: Any) -> str:
    address = {"line1": "Street 1", "city": "City", "postal_code": "1010", "country": country}
    return str(make_customer(client, tenant, address=address, **body)["id"])


# --- the matrix ------------------------------------------------------------------------------


CUSTOMERS: dict[str, tuple[str, dict[str, Any], str]] = {
    # name: (country, extra customer fields, expected tax category)
    "domestic": ("DE", {"tax": {"kind": "individual"}}, "S"),
    "reverse_charge": ("AT", {"tax": {"kind": "business", "tax_id": "ATU12345678"}}, "AE"),
    "oss": ("FR", {"tax": {"kind": "individual"}}, "S"),
    "exempt": ("DE", {"tax": {"exempt": True}}, "E"),
    "out_of_scope": ("US", {"tax": {"kind": "business", "tax_id": "12-3456789"}}, "O"),
}


@pytest.mark.parametrize("kind", sorted(CUSTOMERS))
def test_invoice_and_credit_note_of_each_tax_category_pass_en16931(
    client: TestClient, seller: Tenant, kind: str
) -> None:
    country, extra, category = CUSTOMERS[kind]
    cid = customer(client, seller, country, **extra)
    invoice = one_off(client, seller, cid, 10_000, 2_550)
    assert invoice["einvoice"] == {"issuable": True, "missing": [], "errors": []}
    _, tree = ubl(client, seller, f"/v1/invoices/{invoice['id']}")
    assert texts(tree, "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID") == [category]
    # SEPA credit transfer to the organization's account, not free text (UBL-CR-681)
    assert texts(tree, "cac:PaymentMeans/cbc:PaymentMeansCode") == ["58"]
    account = "cac:PaymentMeans/cac:PayeeFinancialAccount/"
    assert texts(tree, account + "cbc:ID") == [IBAN]
    assert texts(tree, account + "cac:FinancialInstitutionBranch/cbc:ID") == ["COBADEFFXXX"]
    assert texts(tree, "cac:PaymentTerms/cbc:Note") == ["Please quote the invoice number."]
    assert tree.xpath("//cbc:InstructionNote", namespaces=NS) == []

    credit = note(client, seller, invoice["id"], 1_000)
    _, cn = ubl(client, seller, f"/v1/credit_notes/{credit['id']}")
    assert texts(cn, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == [
        invoice["number"]
    ]
    assert texts(cn, "cbc:CreditNoteTypeCode") == ["381"]
    assert texts(cn, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["10.00"]


def test_out_of_scope_carries_no_vat_identifiers(client: TestClient, seller: Tenant) -> None:
    # BR-O-02: no seller or buyer VAT identifier on an O invoice; BR-CO-09: the US EIN is not
    # a VAT identifier (no country prefix): it is the buyer's legal registration id (BT-47).
    cid = customer(client, seller, "US", tax={"kind": "business", "tax_id": "12-3456789"})
    invoice = one_off(client, seller, cid, 5_000)
    _, tree = ubl(client, seller, f"/v1/invoices/{invoice['id']}")
    assert tree.xpath("//cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']", namespaces=NS) == []
    assert texts(tree, BUYER + "cac:PartyLegalEntity/cbc:CompanyID") == ["12-3456789"]
    # the seller's id is still there, as tax registration (BT-32) and identifier (BT-29)
    assert texts(tree, SELLER + "cac:PartyTaxScheme/cbc:CompanyID") == ["DE123456789"]
    assert texts(tree, SELLER + "cac:PartyIdentification/cbc:ID") == ["DE123456789"]


def test_reverse_charge_names_both_vat_ids(client: TestClient, seller: Tenant) -> None:
    cid = customer(client, seller, "AT", tax={"kind": "business", "tax_id": "ATU12345678"})
    _, tree = ubl(client, seller, f"/v1/invoices/{one_off(client, seller, cid, 5_000)['id']}")
    vat = "cac:PartyTaxScheme[cac:TaxScheme/cbc:ID='VAT']/cbc:CompanyID"
    assert texts(tree, SELLER + vat) == ["DE123456789"]
    assert texts(tree, BUYER + vat) == ["ATU12345678"]


def test_zero_and_negative_totals(client: TestClient, seller: Tenant) -> None:
    cid = customer(client, seller, "DE")
    zero = one_off(client, seller, cid, 0)
    assert (zero["total"], zero["status"]) == (0, "paid")
    _, tree = ubl(client, seller, f"/v1/invoices/{zero['id']}")
    assert texts(tree, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["0.00"]

    negative = one_off(client, seller, cid, 10_000, -15_000)
    assert negative["total"] == -5_950
    _, tree = ubl(client, seller, f"/v1/invoices/{negative['id']}")
    # what is owed is negative (the seller owes it); nothing was prepaid
    assert tree.xpath("//cbc:PrepaidAmount", namespaces=NS) == []
    assert texts(tree, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["-59.50"]


def test_issued_documents_do_not_change_after_payments_and_credit_notes(
    client: TestClient, seller: Tenant, rt: Runtime
) -> None:
    cid = customer(client, seller, "DE")
    # customer credit: a paid invoice credited → 3000 credit, used by the next invoice
    first = one_off(client, seller, cid, 10_000)
    ok(client.post(f"/v1/invoices/{first['id']}/pay", json={}, headers=seller.headers))
    note(client, seller, first["id"], 3_000)
    invoice = one_off(client, seller, cid, 5_000)
    assert (invoice["total"], invoice["credit_applied"], invoice["amount_due"]) == (
        5_950,
        3_000,
        2_950,
    )
    path = f"/v1/invoices/{invoice['id']}"
    before, tree = ubl(client, seller, path)
    totals = "cac:LegalMonetaryTotal/cbc:"
    assert texts(tree, totals + "PrepaidAmount") == ["30.00"]  # the credit applied at issue
    assert texts(tree, totals + "PayableAmount") == ["29.50"]
    pdf_before = pdf_text(client, seller, path)
    assert "Credit applied -€30.00" in pdf_before and "Amount due €29.50" in pdf_before

    ok(client.post(f"{path}/pay", json={"amount": 1_000}, headers=seller.headers))  # partly
    note(client, seller, invoice["id"], 500)
    settled = ok(client.get(path, headers=seller.headers))
    assert (settled["amount_paid"], settled["amount_credited"], settled["amount_due"]) == (
        1_000,
        500,
        1_450,
    )

    after, _ = ubl(client, seller, path)
    assert after == before
    # the stored PDF is rendered again from scratch: the same document
    stored = Path(rt.settings.documents_path) / seller.org_id / f"{invoice['id']}.pdf"
    stored.unlink()
    assert pdf_text(client, seller, path) == pdf_before


def test_buyer_reference_is_bt10(client: TestClient, seller: Tenant) -> None:
    cid = customer(client, seller, "DE", buyer_reference="04011000-12345-34")
    got = ok(client.get(f"/v1/customers/{cid}", headers=seller.headers))
    assert got["buyer_reference"] == "04011000-12345-34"
    inv = one_off(client, seller, cid, 100)
    _, tree = ubl(client, seller, f"/v1/invoices/{inv['id']}")
    assert texts(tree, "cbc:BuyerReference") == ["04011000-12345-34"]
    assert "Your reference 04011000-12345-34" in pdf_text(
        client, seller, f"/v1/invoices/{inv['id']}"
    )


def test_characters_xml_cannot_carry_are_left_out(client: TestClient, seller: Tenant) -> None:
    """Found by the deep fuzzing run on the merged code: the API stores C0 controls (all but
    U+0000) and U+FFFE/U+FFFF in names, addresses and descriptions, and writing them into
    the UBL raised in lxml (500 for every e-invoice of that customer). XML 1.0 cannot carry
    them even escaped; they are left out and the document stays valid."""
    odd = "\x01\x0b\x1f\ufffe\uffff"
    address = {"line1": f"Street{odd} 1", "city": "City", "postal_code": "1010", "country": "DE"}
    cid = str(make_customer(client, seller, name=f"Odd{odd} Renter", address=address)["id"])
    inv = create(
        client,
        seller,
        "/v1/invoices",
        {
            "customer": cid,
            "auto_finalize": True,
            "lines": [{"description": f"Keys{odd}", "unit_amount": 1000}],
        },
    )
    _, tree = ubl(client, seller, f"/v1/invoices/{inv['id']}")
    assert texts(tree, f"{BUYER}cac:PartyLegalEntity/cbc:RegistrationName") == ["Odd Renter"]
    assert texts(tree, "cac:InvoiceLine/cac:Item/cbc:Name") == ["Keys"]
    credit = create(
        client,
        seller,
        "/v1/credit_notes",
        {"invoice": inv["id"], "amount": 100, "reason": "other", "memo": f"Sorry{odd}"},
    )
    ubl(client, seller, f"/v1/credit_notes/{credit['id']}")


def test_org_bank_account_is_validated(client: TestClient, seller: Tenant) -> None:
    bad = client.patch(
        "/v1/org", json={"iban": "DE89 3704 0044 0532 0130 01"}, headers=seller.headers
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "iban"
    bad = client.patch("/v1/org", json={"bic": "NOTABIC"}, headers=seller.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "bic"
    org = ok(client.get("/v1/org", headers=seller.headers))
    assert (org["iban"], org["bic"]) == (IBAN, "COBADEFFXXX")


def test_coupon_subscription_and_graduated_usage(client: TestClient, seller: Tenant) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    clock = create(client, seller, "/v1/test_clocks", {"frozen_time": start.isoformat()})["id"]
    cid = customer(client, seller, "DE", test_clock=clock)
    create(
        client,
        seller,
        "/v1/meters",
        {
            "event_name": f"kwh-{uuid.uuid4().hex[:6]}",
            "name": "Energy",
            "aggregation": "sum",
            "value_property": "kwh",
            "unit": "kWh",
        },
    )
    meter = client.get("/v1/meters", headers=seller.headers).json()["data"][0]
    code = f"SAVE{uuid.uuid4().hex[:6]}".upper()
    create(
        client, seller, "/v1/coupons", {"code": code, "percent_off": "10", "duration": "forever"}
    )
    plan = make_plan(
        client,
        seller,
        name="Flat",
        amount=2_000,
        charges=[
            {
                "meter": meter["event_name"],
                "model": "graduated",
                "properties": {
                    "tiers": [
                        {"up_to": 100, "unit_amount": "12.5"},
                        {"up_to": None, "unit_amount": "10", "flat_amount": 300},
                    ]
                },
            }
        ],
    )
    sub = create(
        client, seller, "/v1/subscriptions", {"customer": cid, "plan": plan["id"], "coupon": code}
    )
    ok(
        client.post(
            "/v1/events",
            headers=seller.headers,
            json={
                "event_id": uuid.uuid4().hex,
                "customer": cid,
                "event_name": meter["event_name"],
                "timestamp": (start + timedelta(days=3)).isoformat(),
                "properties": {"kwh": "101"},
            },
        ),
        202,
    )
    ok(
        client.post(
            f"/v1/test_clocks/{clock}/advance",
            headers=seller.headers,
            json={"frozen_time": (start + timedelta(days=32)).isoformat()},
        )
    )
    page = ok(
        client.get("/v1/invoices", params={"subscription": sub["id"]}, headers=seller.headers)
    )
    invoices = sorted(page["data"], key=lambda i: i["issued_at"])
    assert [i["status"] for i in invoices] == ["open", "open"]
    for inv in invoices:
        ubl(client, seller, f"/v1/invoices/{inv['id']}")
    # usage: 100 × 12.5 + 1 × 10 + 300 = 1560; the line keeps its 101 kWh
    usage = next(line for line in invoices[1]["lines"] if line["kind"] == "usage")
    assert (usage["amount"], usage["quantity"]) == (1_560, "101")
    _, tree = ubl(client, seller, f"/v1/invoices/{invoices[1]['id']}")
    line = tree.xpath("cac:InvoiceLine[cac:Item/cbc:Name='Energy']", namespaces=NS)[0]
    assert texts(line, "cbc:InvoicedQuantity") == ["101"]
    assert texts(line, "cac:Price/cbc:PriceAmount") == ["15.60"]
    assert texts(line, "cac:Price/cbc:BaseQuantity") == ["101"]
    text = pdf_text(client, seller, f"/v1/invoices/{invoices[1]['id']}")
    assert "101 kWh" in text
    assert "graduated: 100 × €0.125 + 1 × €0.10 + €3.00" in text


# --- what EN 16931 cannot express: refused, naming the fields --------------------------------


def test_missing_seller_tax_id_and_buyer_address_answer_409(client: TestClient) -> None:
    tenant = signup(client, name="Kleinbetrieb")
    ok(
        client.patch(
            "/v1/org", json={"country": "DE", "tax_ruleset": "eu_vat"}, headers=tenant.headers
        )
    )
    cid = make_customer(client, tenant)["id"]  # no address: the org's country decides (S)
    draft = create(
        client,
        tenant,
        "/v1/invoices",
        {
            "customer": cid,
            "auto_finalize": False,
            "lines": [{"description": "Work", "unit_amount": 1000}],
        },
    )
    assert draft["einvoice"]["issuable"] is False
    invoice = one_off(client, tenant, cid, 1_000)
    assert invoice["einvoice"]["issuable"] is False
    assert invoice["einvoice"]["missing"] == ["org.tax_id", "customer.address"]
    response = client.get(f"/v1/invoices/{invoice['id']}/ubl", headers=tenant.headers)
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "einvoice_not_issuable"
    assert [e["field"] for e in body["errors"]] == ["org.tax_id", "customer.address"]
    # the PDF is still an invoice
    assert (
        client.get(f"/v1/invoices/{invoice['id']}/pdf", headers=tenant.headers).status_code == 200
    )
    credit = note(client, tenant, invoice["id"], 100)
    response = client.get(f"/v1/credit_notes/{credit['id']}/ubl", headers=tenant.headers)
    assert response.status_code == 409 and response.json()["code"] == "einvoice_not_issuable"


def test_three_decimal_currency_is_refused(client: TestClient) -> None:
    tenant = signup(client, name="Manama Trading WLL")
    ok(
        client.patch(
            "/v1/org",
            headers=tenant.headers,
            json={
                "country": "BH",
                "currency": "bhd",
                "tax_id": "BH200000000000001",
                "address": {"line1": "Road 1", "city": "Manama", "country": "BH"},
            },
        )
    )
    cid = customer(client, tenant, "BH", currency="bhd")
    invoice = one_off(client, tenant, cid, 12_345, currency="bhd")
    assert invoice["einvoice"]["issuable"] is False
    assert [e["field"] for e in invoice["einvoice"]["errors"]] == ["currency"]
    assert invoice["einvoice"]["missing"] == []
    response = client.get(f"/v1/invoices/{invoice['id']}/ubl", headers=tenant.headers)
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "currency"


def test_the_validator_catches_what_kassa_used_to_write() -> None:
    # a canary for the helper itself: an out-of-scope invoice with VAT identifiers and a
    # buyer VAT id without country prefix is what the API served before (BR-O-02, BR-CO-09)
    xml = (Path(__file__).resolve().parents[1] / "data" / "en16931-broken.xml").read_bytes()
    assert {a.id for a in fatal(xml)} >= {"BR-O-02", "BR-CO-09"}
