"""Golden invoices: hand-computed scenarios checked end to end through the HTTP API.

Every expected number below is worked out by hand in the comments (tiers, proration by the
second, one half-up rounding per line, the coupon on the subtotal, tax rounded once per
(category, rate)), never by calling Kassa's own functions. Amounts are minor units.
"""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader

from tests.conftest import Tenant, create, make_customer, make_plan, signup
from tests.einvoice import assert_valid_ubl

VIENNA = ZoneInfo("Europe/Vienna")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
BAHRAIN = ZoneInfo("Asia/Bahrain")

REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Article 196, Council Directive 2006/112/EC)"
)
UBL_NS = {
    "inv": "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}


# --- helpers ----------------------------------------------------------------------------


def at(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def ok(response: Any, *codes: int) -> dict[str, Any]:
    assert response.status_code in (codes or (200,)), response.text
    return dict(response.json())


def patch_org(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    return ok(client.patch("/v1/org", json=body, headers=tenant.headers))


def new_clock(client: TestClient, tenant: Tenant, when: datetime) -> str:
    body = {"name": "golden", "frozen_time": when.isoformat()}
    return str(create(client, tenant, "/v1/test_clocks", body)["id"])


def advance(client: TestClient, tenant: Tenant, clock: str, when: datetime) -> None:
    ok(
        client.post(
            f"/v1/test_clocks/{clock}/advance",
            json={"frozen_time": when.isoformat()},
            headers=tenant.headers,
        )
    )


def send_events(client: TestClient, tenant: Tenant, events: list[dict[str, Any]]) -> None:
    for event in events:
        event.setdefault("event_id", f"ev-{uuid.uuid4().hex}")
    result = ok(
        client.post("/v1/events/batch", json={"events": events}, headers=tenant.headers), 202
    )
    assert (result["accepted"], result["rejected"]) == (len(events), []), result


def event(customer: str, name: str, when: datetime, **properties: Any) -> dict[str, Any]:
    return {
        "customer": customer,
        "event_name": name,
        "timestamp": when.isoformat(),
        "properties": properties,
    }


def invoices_of(client: TestClient, tenant: Tenant, subscription: str) -> list[dict[str, Any]]:
    page = ok(client.get("/v1/invoices", params={"subscription": subscription},
                         headers=tenant.headers))  # fmt: skip
    return sorted(page["data"], key=lambda i: i["issued_at"])


def get_invoice(client: TestClient, tenant: Tenant, invoice_id: str) -> dict[str, Any]:
    return ok(client.get(f"/v1/invoices/{invoice_id}", headers=tenant.headers))


Row = tuple[str, str, Decimal | None, Decimal | None, int, datetime | None, datetime | None]


def rows(invoice: dict[str, Any]) -> list[Row]:
    """Each line as (kind, description, quantity, unit_amount, amount, period_start, end)."""
    return [
        (
            line["kind"],
            line["description"],
            dec(line["quantity"]),
            dec(line["unit_amount"]),
            line["amount"],
            parse(line["period_start"]),
            parse(line["period_end"]),
        )
        for line in invoice["lines"]
    ]


def tax_rows(invoice: dict[str, Any]) -> list[tuple[str, Decimal, int, int]]:
    return [
        (t["category"], Decimal(str(t["rate"])), t["taxable_amount"], t["amount"])
        for t in invoice["tax"]
    ]


def pdf_text(client: TestClient, tenant: Tenant, path: str) -> str:
    response = client.get(path, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    return text.replace("\u00a0", " ")


def subscribe(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    return create(client, tenant, "/v1/subscriptions", body)


# --- 1. graduated usage + proration + coupon + EU reverse charge ------------------------
#
# Seller: a German org (DE, eu_vat), prefix "KDE". Buyer: an Austrian business with the
# well-formed VAT id ATU12345678 → reverse charge (AE, 0 %, with the Article 196 note).
# Customer time zone Europe/Vienna; the test clock starts 2026-04-01 00:00 (CEST).
#
# Plan "Grid Basic": 4900 (€49.00) per seat and month, paid in advance, plus a graduated
# charge on the meter "Energy" (sum of kWh):
#   tier 1: units 1–100   at 12.5 /kWh
#   tier 2: units 101–500 at 9.75 /kWh + flat 300
#   tier 3: units 501+    at 7.125 /kWh + flat 500
# Coupon SPRING15: 15 % off, repeating for 3 invoices.
#
# Invoice 1 (start, 1 April, 2 seats): 2 × 4900 = 9800; 15 % = 1470; total 8330 (AE 0 %).
#
# On 20 April 15:30 the quantity goes 2 → 5, prorated now. April has 30 days
# (2 592 000 s, the DST change was on 29 March). Remaining: 20 Apr 15:30 → 1 May 00:00 =
# 10 d 8.5 h = 894 600 s; fraction 894 600 / 2 592 000 = 497 / 1440.
#   credit: −9800 × 497/1440 = −4 870 600/1440 = −3382.36… → −3382
#   charge: 24500 × 497/1440 = 12 176 500/1440 = 8455.90… → 8456
#
# April usage: 120.25 (2 Apr) + 250.5 (15 Apr) + 100 (25 Apr) = 470.75 kWh before the
# period ends; 1000 kWh at exactly 1 May 00:00 belongs to May. After the period ended (00:30,
# within the meter's 1 h lateness) 33.25 kWh stamped 30 Apr 23:59:59 arrive → 504 kWh.
#
# Draft issued at 1 May 00:00 (470.75 kWh):
#   tiers: 100 × 12.5 = 1250; 370.75 × 9.75 + 300 = 3914.8125 → line 5164.8125 → 5165
#   subtotal 5165 + 24500 − 3382 + 8456 = 34739; 15 % = 5210.85 → 5211; total 29528
# Finalized at 1 May 01:00 (grace 3600 s = lateness 3600 s), usage re-rated (504 kWh):
#   tiers: 100 × 12.5 = 1250; 400 × 9.75 + 300 = 4200; 4 × 7.125 + 500 = 528.5
#   line 1250 + 4200 + 528.5 = 5978.5 → 5979 (rounded once, half-up)
#   subtotal 5979 + 24500 − 3382 + 8456 = 35553
#   discount 15 % × 35553 = 5332.95 → 5333
#   taxable 35553 − 5333 = 30220; AE 0 % → tax 0; total 30220; amount due 30220
# Number: the second invoice finalized in the org → KDE-000002.

APR1 = at(VIENNA, 2026, 4, 1)
CHANGE_AT = at(VIENNA, 2026, 4, 20, 15, 30)
MAY1 = at(VIENNA, 2026, 5, 1)
JUN1 = at(VIENNA, 2026, 6, 1)


@pytest.fixture(scope="module")
def reverse_charge(client: TestClient) -> dict[str, Any]:
    """Scenario 1, built once for the tests that read it (the golden snapshots are taken
    before any later test settles or credits the invoices)."""
    tenant = signup(client, name="Golden Grid GmbH")
    patch_org(client, tenant, country="DE", tax_ruleset="eu_vat", invoice_prefix="KDE",
              address={"line1": "Hauptstr. 1", "city": "Berlin", "postal_code": "10115",
                       "country": "DE"}, tax_id="DE123456789")  # fmt: skip
    org = ok(client.get("/v1/org", headers=tenant.headers))
    clock = new_clock(client, tenant, APR1)
    customer = make_customer(
        client, tenant, name="Wiener Strom GmbH", timezone="Europe/Vienna", test_clock=clock,
        address={"line1": "Ring 5", "city": "Wien", "postal_code": "1010", "country": "AT"},
        tax={"kind": "business", "tax_id": "ATU12345678"},
    )  # fmt: skip
    create(client, tenant, "/v1/meters",
           {"event_name": "kwh", "name": "Energy", "aggregation": "sum",
            "value_property": "kwh", "unit": "kWh", "lateness_seconds": 3600})  # fmt: skip
    create(client, tenant, "/v1/coupons",
           {"code": "SPRING15", "percent_off": "15", "duration": "repeating",
            "duration_in_periods": 3})  # fmt: skip
    plan = make_plan(
        client, tenant, code="grid-basic", name="Grid Basic", currency="eur", amount=4900,
        charges=[{"meter": "kwh", "model": "graduated", "properties": {"tiers": [
            {"up_to": 100, "unit_amount": "12.5"},
            {"up_to": 500, "unit_amount": "9.75", "flat_amount": 300},
            {"up_to": None, "unit_amount": "7.125", "flat_amount": 500},
        ]}}],
    )  # fmt: skip
    sub = subscribe(client, tenant, customer=customer["id"], plan=plan["id"], quantity=2,
                    coupon="SPRING15")  # fmt: skip
    cid = customer["id"]
    send_events(client, tenant, [
        event(cid, "kwh", at(VIENNA, 2026, 4, 2, 10), kwh="120.25"),
        event(cid, "kwh", at(VIENNA, 2026, 4, 15, 8), kwh="250.5"),
        event(cid, "kwh", MAY1, kwh="1000"),  # the next period's first instant
    ])  # fmt: skip
    advance(client, tenant, clock, CHANGE_AT)
    ok(client.post(f"/v1/subscriptions/{sub['id']}/change",
                   json={"quantity": 5, "effective": "now", "proration": "prorate"},
                   headers=tenant.headers))  # fmt: skip
    send_events(client, tenant, [event(cid, "kwh", at(VIENNA, 2026, 4, 25, 12), kwh="100")])
    advance(client, tenant, clock, MAY1 + timedelta(minutes=30))
    start, draft = invoices_of(client, tenant, sub["id"])
    # late but within the lateness: counts in April when the draft is finalized
    send_events(client, tenant, [event(cid, "kwh", at(VIENNA, 2026, 4, 30, 23, 59, 59),
                                       kwh="33.25")])  # fmt: skip
    advance(client, tenant, clock, MAY1 + timedelta(hours=2))
    final = get_invoice(client, tenant, draft["id"])
    start = get_invoice(client, tenant, start["id"])
    return {
        "tenant": tenant, "org": org, "clock": clock, "customer": cid, "sub": sub,
        "start": start, "draft": draft, "final": final,
    }  # fmt: skip


def test_reverse_charge_start_invoice(reverse_charge: dict[str, Any]) -> None:
    inv = reverse_charge["start"]
    assert rows(inv) == [
        ("fixed", "Grid Basic", Decimal(2), Decimal(4900), 9800, APR1, MAY1),
        ("discount", "Coupon SPRING15", Decimal(1), Decimal(-1470), -1470, APR1, MAY1),
    ]
    assert (inv["subtotal"], inv["discount"], inv["total"]) == (9800, 1470, 8330)
    assert tax_rows(inv) == [("AE", Decimal(0), 8330, 0)]
    assert inv["notes"] == [REVERSE_CHARGE_NOTE]
    assert (inv["status"], inv["number"], inv["amount_due"]) == ("open", "KDE-000001", 8330)


def test_advance_invoice_is_finalized_after_the_grace(reverse_charge: dict[str, Any]) -> None:
    # issued 1 April 00:00, grace 3600 s, no meters charged at a start point → 01:00
    assert parse(reverse_charge["start"]["finalize_at"]) == APR1 + timedelta(hours=1)
    assert parse(reverse_charge["start"]["finalized_at"]) == APR1 + timedelta(hours=1)


def test_reverse_charge_draft_before_the_late_event(reverse_charge: dict[str, Any]) -> None:
    draft = reverse_charge["draft"]
    assert (draft["status"], draft["number"]) == ("draft", None)
    assert parse(draft["finalize_at"]) == MAY1 + timedelta(hours=1)
    assert [(r[0], r[4]) for r in rows(draft)] == [
        ("usage", 5165), ("fixed", 24500), ("proration", -3382), ("proration", 8456),
        ("discount", -5211),
    ]  # fmt: skip
    assert (draft["subtotal"], draft["discount"], draft["total"]) == (34739, 5211, 29528)


def test_reverse_charge_period_end_invoice_is_golden(reverse_charge: dict[str, Any]) -> None:
    inv = reverse_charge["final"]
    assert rows(inv) == [
        ("usage", "Energy", Decimal(504), None, 5979, APR1, MAY1),
        ("fixed", "Grid Basic", Decimal(5), Decimal(4900), 24500, MAY1, JUN1),
        ("proration", "Unused time on Grid Basic × 2", Decimal(1), Decimal(-3382), -3382,
         CHANGE_AT, MAY1),
        ("proration", "Remaining time on Grid Basic × 5", Decimal(1), Decimal(8456), 8456,
         CHANGE_AT, MAY1),
        ("discount", "Coupon SPRING15", Decimal(1), Decimal(-5333), -5333, APR1, MAY1),
    ]  # fmt: skip
    assert inv["subtotal"] == 35553
    assert inv["discount"] == 5333
    assert tax_rows(inv) == [("AE", Decimal(0), 30220, 0)]
    assert inv["total"] == 30220
    assert inv["notes"] == [REVERSE_CHARGE_NOTE]
    assert (inv["status"], inv["number"]) == ("open", "KDE-000002")
    assert (inv["credit_applied"], inv["amount_paid"], inv["amount_due"]) == (0, 0, 30220)
    assert (inv["currency"], parse(inv["period_start"]), parse(inv["period_end"])) == (
        "eur", APR1, MAY1)  # fmt: skip
    finalized = MAY1 + timedelta(hours=1)
    assert parse(inv["finalized_at"]) == finalized
    terms = reverse_charge["org"]["payment_terms_days"]
    assert parse(inv["due_at"]) == finalized + timedelta(days=terms)


# --- 2. JPY, a zero-decimal currency --------------------------------------------------
#
# A Japanese seller that charges no tax (ruleset "none": JP is in no ruleset's region), a
# domestic customer in Asia/Tokyo. Plan "API Starter": 980 yen per month in arrears, plus
# 0.5 yen per API call (per_unit "0.5"; the meter sums the property n). Coupon KOHAI:
# 12.5 % forever. Clock: 2026-06-01 00:00 JST.
#   June calls: 4000 + 5000 + 3345 = 12 345 → 12 345 × 0.5 = 6172.5 → 6173 (half-up)
#   fixed (arrears, June): 980
#   subtotal 980 + 6173 = 7153; 12.5 % = 894.125 → 894; total 7153 − 894 = 6259 yen
#   tax: O 0 % on 6259 → 0, no note. Issued 1 July 00:00, finalized 01:00 → JP-000001.


def test_jpy_zero_decimal_usage_invoice(client: TestClient) -> None:
    tenant = signup(client, name="Tokyo API KK")
    patch_org(client, tenant, country="JP", currency="jpy", timezone="Asia/Tokyo",
              tax_ruleset="none", invoice_prefix="JP")  # fmt: skip
    june, july = at(TOKYO, 2026, 6, 1), at(TOKYO, 2026, 7, 1)
    clock = new_clock(client, tenant, june)
    cid = make_customer(client, tenant, name="Sakura Shoten", timezone="Asia/Tokyo",
                        currency="jpy", address={"country": "JP"},
                        test_clock=clock)["id"]  # fmt: skip
    create(client, tenant, "/v1/meters",
           {"event_name": "api", "name": "API calls", "aggregation": "sum",
            "value_property": "n"})  # fmt: skip
    create(client, tenant, "/v1/coupons",
           {"code": "KOHAI", "percent_off": "12.5", "duration": "forever"})  # fmt: skip
    plan = make_plan(client, tenant, name="API Starter", currency="jpy", amount=980,
                     pay_in_advance=False,
                     charges=[{"meter": "api", "model": "per_unit",
                               "properties": {"unit_amount": "0.5"}}])  # fmt: skip
    sub = subscribe(client, tenant, customer=cid, plan=plan["id"], coupon="KOHAI")
    assert invoices_of(client, tenant, sub["id"]) == []  # arrears: nothing at the start
    send_events(client, tenant, [
        event(cid, "api", at(TOKYO, 2026, 6, 3, 9), n=4000),
        event(cid, "api", at(TOKYO, 2026, 6, 17, 18), n=5000),
        event(cid, "api", at(TOKYO, 2026, 6, 30, 23, 59, 59), n=3345),
    ])  # fmt: skip
    advance(client, tenant, clock, july + timedelta(hours=2))
    (inv,) = invoices_of(client, tenant, sub["id"])
    assert rows(inv) == [
        ("fixed", "API Starter", Decimal(1), Decimal(980), 980, june, july),
        ("usage", "API calls", Decimal(12345), Decimal("0.5"), 6173, june, july),
        ("discount", "Coupon KOHAI", Decimal(1), Decimal(-894), -894, june, july),
    ]
    assert (inv["currency"], inv["subtotal"], inv["discount"]) == ("jpy", 7153, 894)
    assert tax_rows(inv) == [("O", Decimal(0), 6259, 0)]
    assert (inv["total"], inv["amount_due"], inv["notes"]) == (6259, 6259, [])
    assert (inv["status"], inv["number"]) == ("open", "JP-000001")
    assert parse(inv["finalized_at"]) == july + timedelta(hours=1)


# --- 3. BHD, a three-decimal currency (fils) -------------------------------------------
#
# A Bahraini seller without tax (ruleset "none"), customer in Asia/Bahrain (UTC+3). Plan
# "Vault": 12 500 fils (12.500 BHD) per month in arrears, plus graduated storage (sum of gb)
# with unit prices finer than a fils:
#   tier 1: 1–1000 GB at 1.2345 fils; tier 2: 1001+ at 0.98765 fils + flat 250 fils
# Usage 1500 GB (600 + 400.5 + 499.5):
#   1000 × 1.2345 = 1234.5; 500 × 0.98765 + 250 = 493.825 + 250 = 743.825
#   line 1234.5 + 743.825 = 1978.325 → 1978 fils (rounding each tier would give 1235 + 744
#   = 1979)
#   total 12 500 + 1978 = 14 478 fils = "14.478" BHD; tax O 0 %.


def test_bhd_three_decimal_invoice_and_pdf(client: TestClient) -> None:
    tenant = signup(client, name="Manama Vault WLL")
    patch_org(client, tenant, country="BH", currency="bhd", timezone="Asia/Bahrain",
              tax_ruleset="none", invoice_prefix="BH")  # fmt: skip
    june, july = at(BAHRAIN, 2026, 6, 1), at(BAHRAIN, 2026, 7, 1)
    clock = new_clock(client, tenant, june)
    cid = make_customer(client, tenant, name="Pearl Traders", timezone="Asia/Bahrain",
                        currency="bhd", address={"country": "BH"},
                        test_clock=clock)["id"]  # fmt: skip
    create(client, tenant, "/v1/meters",
           {"event_name": "gb", "name": "Storage", "aggregation": "sum",
            "value_property": "gb"})  # fmt: skip
    plan = make_plan(client, tenant, name="Vault", currency="bhd", amount=12500,
                     pay_in_advance=False,
                     charges=[{"meter": "gb", "model": "graduated", "properties": {"tiers": [
                         {"up_to": 1000, "unit_amount": "1.2345"},
                         {"up_to": None, "unit_amount": "0.98765", "flat_amount": 250},
                     ]}}])  # fmt: skip
    sub = subscribe(client, tenant, customer=cid, plan=plan["id"])
    send_events(client, tenant, [
        event(cid, "gb", at(BAHRAIN, 2026, 6, 1), gb="600"),
        event(cid, "gb", at(BAHRAIN, 2026, 6, 10, 12), gb="400.5"),
        event(cid, "gb", at(BAHRAIN, 2026, 6, 29, 7), gb="499.5"),
    ])  # fmt: skip
    advance(client, tenant, clock, july + timedelta(hours=2))
    (inv,) = invoices_of(client, tenant, sub["id"])
    assert rows(inv) == [
        ("fixed", "Vault", Decimal(1), Decimal(12500), 12500, june, july),
        ("usage", "Storage", Decimal(1500), None, 1978, june, july),
    ]
    assert (inv["currency"], inv["subtotal"], inv["discount"]) == ("bhd", 14478, 0)
    assert tax_rows(inv) == [("O", Decimal(0), 14478, 0)]
    assert (inv["total"], inv["amount_due"], inv["number"]) == (14478, 14478, "BH-000001")
    text = pdf_text(client, tenant, f"/v1/invoices/{inv['id']}/pdf")
    assert "BH-000001" in text
    assert "BHD 14.478" in text  # the total, with the currency's three decimals
    assert "BHD 1.978" in text and "BHD 12.500" in text


# --- 4. Domestic standard VAT ----------------------------------------------------------
#
# German seller (eu_vat), German consumer (individual, no tax id) → S at DE's rate on the
# tax point: 19 % (16 % only from 2020-07-01 to 2020-12-31). Plan "Studio": 1350 per seat,
# 3 seats, in advance, plus renders at 10.5 cents each (count). Clock 2026-04-01 (Berlin).
#   start invoice: 3 × 1350 = 4050; tax 4050 × 19 % = 769.5 → 770; total 4820
#   April renders: 100 × 10.5 = 1050
#   period-end invoice: usage 1050 + May's fee 4050 = 5100; ONE tax row S 19 %:
#     5100 × 19 % = 969 exactly; rounding per line would give 199.5 → 200 plus
#     769.5 → 770 = 970, one cent too much (EN 16931 BR-CO-17: per category and rate)
#   total 5100 + 969 = 6069


def test_domestic_vat_is_rounded_once_per_category_and_rate(client: TestClient) -> None:
    tenant = signup(client, name="Berlin Render GmbH")
    patch_org(client, tenant, country="DE", tax_ruleset="eu_vat", invoice_prefix="BER")
    apr1, may1, jun1 = at(BERLIN, 2026, 4, 1), at(BERLIN, 2026, 5, 1), at(BERLIN, 2026, 6, 1)
    clock = new_clock(client, tenant, apr1)
    cid = make_customer(client, tenant, name="Erika Mustermann", timezone="Europe/Berlin",
                        address={"country": "DE"}, tax={"kind": "individual"},
                        test_clock=clock)["id"]  # fmt: skip
    create(
        client,
        tenant,
        "/v1/meters",
        {"event_name": "render", "name": "Renders", "aggregation": "count"},
    )
    plan = make_plan(client, tenant, name="Studio", amount=1350,
                     charges=[{"meter": "render", "model": "per_unit",
                               "properties": {"unit_amount": "10.5"}}])  # fmt: skip
    sub = subscribe(client, tenant, customer=cid, plan=plan["id"], quantity=3)
    send_events(client, tenant, [
        event(cid, "render", apr1 + timedelta(hours=7, minutes=i)) for i in range(100)
    ])  # fmt: skip
    advance(client, tenant, clock, may1 + timedelta(hours=2))
    start, inv = invoices_of(client, tenant, sub["id"])
    assert rows(start) == [("fixed", "Studio", Decimal(3), Decimal(1350), 4050, apr1, may1)]
    assert tax_rows(start) == [("S", Decimal(19), 4050, 770)]
    assert (start["total"], start["notes"]) == (4820, [])
    assert rows(inv) == [
        ("usage", "Renders", Decimal(100), Decimal("10.5"), 1050, apr1, may1),
        ("fixed", "Studio", Decimal(3), Decimal(1350), 4050, may1, jun1),
    ]
    assert tax_rows(inv) == [("S", Decimal(19), 5100, 969)]
    assert (inv["subtotal"], inv["discount"], inv["total"]) == (5100, 0, 6069)
    assert (inv["status"], inv["number"], inv["amount_due"]) == ("open", "BER-000002", 6069)


# The tax point is a calendar day in the customer's time zone. Germany's temporary 16 %
# ended on 2020-12-31; January 2021's fee, invoiced at 2021-01-01 00:00 Berlin
# (2020-12-31 23:00 UTC), is taxed at 19 %: 10000 × 19 % = 1900, total 11 900.
# December's fee, invoiced at 2020-12-01 00:00 Berlin, is at 16 %: 1600, total 11 600.


def test_vat_rate_is_chosen_on_the_local_tax_point(client: TestClient) -> None:
    tenant = signup(client, name="Silvester GmbH")
    patch_org(client, tenant, country="DE", tax_ruleset="eu_vat")
    clock = new_clock(client, tenant, at(BERLIN, 2020, 12, 1))
    cid = make_customer(client, tenant, timezone="Europe/Berlin", address={"country": "DE"},
                        test_clock=clock)["id"]  # fmt: skip
    sub = subscribe(
        client, tenant, customer=cid, plan=make_plan(client, tenant, amount=10000)["id"]
    )
    advance(client, tenant, clock, at(BERLIN, 2021, 1, 1, 2))
    december, january = invoices_of(client, tenant, sub["id"])
    assert (tax_rows(december), december["total"]) == ([("S", Decimal(16), 10000, 1600)], 11600)
    assert parse(january["lines"][0]["period_start"]) == at(BERLIN, 2021, 1, 1)
    assert (tax_rows(january), january["total"]) == ([("S", Decimal(19), 10000, 1900)], 11900)


# --- 5. documents through the API -----------------------------------------------------
#
# The reverse-charge invoice KDE-000002 of scenario 1: total €302.20, one tax row
# "Reverse charge 0 %" on €302.20 with €0.00 tax, the Article 196 note.


def ubl_of(client: TestClient, tenant: Tenant, invoice_id: str) -> Any:
    """The invoice's UBL, checked by the suite's one e-invoice validator (XSD + EN 16931)."""
    response = client.get(f"/v1/invoices/{invoice_id}/ubl", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    tree, _warnings = assert_valid_ubl(response.content)
    return tree


def test_reverse_charge_pdf_and_ubl(client: TestClient, reverse_charge: dict[str, Any]) -> None:
    tenant, inv = reverse_charge["tenant"], reverse_charge["final"]
    text = pdf_text(client, tenant, f"/v1/invoices/{inv['id']}/pdf")
    assert "KDE-000002" in text
    assert "Total €302.20" in text
    assert "Reverse charge 0% €302.20 €0.00" in text  # the tax row: taxable, tax
    assert " ".join(REVERSE_CHARGE_NOTE.split()) in " ".join(text.split())
    assert "VAT ID: ATU12345678" in text

    doc = ubl_of(client, tenant, inv["id"])
    assert doc.findtext("cbc:ID", namespaces=UBL_NS) == "KDE-000002"
    assert doc.findtext("cbc:Note", namespaces=UBL_NS) == REVERSE_CHARGE_NOTE
    subtotal = doc.find("cac:TaxTotal/cac:TaxSubtotal", UBL_NS)
    assert [subtotal.findtext(p, namespaces=UBL_NS) for p in (
        "cbc:TaxableAmount", "cbc:TaxAmount", "cac:TaxCategory/cbc:ID",
        "cac:TaxCategory/cbc:Percent", "cac:TaxCategory/cbc:TaxExemptionReasonCode",
    )] == ["302.20", "0.00", "AE", "0", "VATEX-EU-AE"]  # fmt: skip
    assert doc.findtext("cac:LegalMonetaryTotal/cbc:TaxInclusiveAmount",
                        namespaces=UBL_NS) == "302.20"  # fmt: skip


def test_document_dates_are_the_customers_calendar_days(
    client: TestClient, reverse_charge: dict[str, Any]
) -> None:
    # finalized 1 May 01:00 Vienna, due 30 days later; April is 1–30 April (inclusive);
    # May's fee covers 1–31 May.
    tenant, inv = reverse_charge["tenant"], reverse_charge["final"]
    doc = ubl_of(client, tenant, inv["id"])
    terms = reverse_charge["org"]["payment_terms_days"]
    assert doc.findtext("cbc:IssueDate", namespaces=UBL_NS) == "2026-05-01"
    due = (MAY1 + timedelta(hours=1, days=terms)).date().isoformat()
    assert doc.findtext("cbc:DueDate", namespaces=UBL_NS) == due
    period = doc.find("cac:InvoicePeriod", UBL_NS)
    assert [period.findtext(f"cbc:{p}", namespaces=UBL_NS) for p in ("StartDate", "EndDate")] == [
        "2026-04-01", "2026-04-30"]  # fmt: skip
    fee = doc.findall("cac:InvoiceLine", UBL_NS)[1]
    assert fee.findtext("cac:Item/cbc:Name", namespaces=UBL_NS) == "Grid Basic"
    assert [fee.findtext(f"cac:InvoicePeriod/cbc:{p}", namespaces=UBL_NS)
            for p in ("StartDate", "EndDate")] == ["2026-05-01", "2026-05-31"]  # fmt: skip


def test_document_lines_multiply_out(client: TestClient, reverse_charge: dict[str, Any]) -> None:
    # EN 16931: line net amount = quantity × price / base quantity (within half a cent)
    tenant, inv = reverse_charge["tenant"], reverse_charge["final"]
    for line in ubl_of(client, tenant, inv["id"]).findall("cac:InvoiceLine", UBL_NS):
        quantity = Decimal(line.findtext("cbc:InvoicedQuantity", namespaces=UBL_NS))
        price = Decimal(line.findtext("cac:Price/cbc:PriceAmount", namespaces=UBL_NS))
        base = Decimal(line.findtext("cac:Price/cbc:BaseQuantity", "1", namespaces=UBL_NS))
        amount = Decimal(line.findtext("cbc:LineExtensionAmount", namespaces=UBL_NS))
        name = line.findtext("cac:Item/cbc:Name", namespaces=UBL_NS)
        assert abs(quantity * price / base - amount) <= Decimal("0.005"), name


# --- 6. credit note, payments and the customer statement -------------------------------
#
# Scenario 1's customer owes 8330 (KDE-000001) + 30220 (KDE-000002) = 38 550 on 1 May.
#   3 May:  KDE-000001 paid in full (8330)                       → 30 220
#   5 May:  credit note 5000 on KDE-000002 (AE 0 %: net 5000, tax 0; open invoice → it
#           reduces what is due: to_invoice 5000)                → 25 220
#   10 May: 10 000 paid on KDE-000002 (due 30220 − 5000 − 10000 = 15 220) → 15 220
# Statement 2–31 May: opening 38 550, three credits, closing 15 220 = the balance.
# Statement 1 April–31 May: opening 0, the two invoices first, same closing.


def test_credit_note_payments_and_statement(
    client: TestClient, reverse_charge: dict[str, Any]
) -> None:
    tenant, cid, clock = (
        reverse_charge["tenant"],
        reverse_charge["customer"],
        reverse_charge["clock"],
    )
    first, second = reverse_charge["start"]["id"], reverse_charge["final"]["id"]
    advance(client, tenant, clock, at(VIENNA, 2026, 5, 3, 10))
    paid = ok(client.post(f"/v1/invoices/{first}/pay", json={}, headers=tenant.headers))
    assert (paid["status"], paid["amount_paid"], paid["amount_due"]) == ("paid", 8330, 0)
    advance(client, tenant, clock, at(VIENNA, 2026, 5, 5, 10))
    note = create(client, tenant, "/v1/credit_notes",
                  {"invoice": second, "amount": 5000, "reason": "order_change"})  # fmt: skip
    assert (note["number"], note["subtotal"], note["tax_total"], note["total"]) == (
        "KDE-CN-000001", 5000, 0, 5000)  # fmt: skip
    assert [(t["category"], t["taxable_amount"], t["amount"]) for t in note["tax"]] == [
        ("AE", 5000, 0)]  # fmt: skip
    assert (note["to_invoice"], note["to_credit"]) == (5000, 0)
    advance(client, tenant, clock, at(VIENNA, 2026, 5, 10, 10))
    part = ok(client.post(f"/v1/invoices/{second}/pay", json={"amount": 10000},
                          headers=tenant.headers))  # fmt: skip
    assert (part["status"], part["amount_credited"], part["amount_paid"], part["amount_due"]) == (
        "open", 5000, 10000, 15220)  # fmt: skip

    balance = ok(client.get(f"/v1/customers/{cid}/balance", headers=tenant.headers))
    assert [(b["currency"], b["receivable"], b["credit"], b["balance"])
            for b in balance["balances"]] == [("eur", 15220, 0, 15220)]  # fmt: skip

    def statement(start: str, end: str) -> dict[str, Any]:
        query = {"from": start, "to": end}
        return ok(client.get(f"/v1/customers/{cid}/statement", params=query,
                             headers=tenant.headers))  # fmt: skip

    may = statement("2026-05-02", "2026-05-31")
    assert (may["currency"], may["from"], may["to"]) == ("eur", "2026-05-02", "2026-05-31")
    assert may["opening_balance"] == 38550
    assert [(i["kind"], i["source"]["id"], i["debit"], i["credit"], i["balance"])
            for i in may["items"]] == [
        ("payment", first, 0, 8330, 30220),
        ("credit_note", note["id"], 0, 5000, 25220),
        ("payment", second, 0, 10000, 15220),
    ]  # fmt: skip
    assert [parse(i["occurred_at"]) for i in may["items"]] == [
        at(VIENNA, 2026, 5, day, 10) for day in (3, 5, 10)
    ]
    assert may["closing_balance"] == 15220 == balance["balances"][0]["balance"]

    spring = statement("2026-04-01", "2026-05-31")
    assert spring["opening_balance"] == 0
    assert [(i["kind"], i["source"]["id"], i["debit"], i["credit"])
            for i in spring["items"][:2]] == [
        ("invoice_finalized", first, 8330, 0), ("invoice_finalized", second, 30220, 0)]  # fmt: skip
    assert len(spring["items"]) == 5 and spring["closing_balance"] == 15220

    text = pdf_text(client, tenant, f"/v1/customers/{cid}/statement?from=2026-05-02"
                                    "&to=2026-05-31&format=pdf")  # fmt: skip
    assert "Statement" in text and "Closing balance" in text and "€152.20" in text
    assert "€385.50" in text  # the opening balance

    note_text = pdf_text(client, tenant, f"/v1/credit_notes/{note['id']}/pdf")
    assert "KDE-CN-000001" in note_text
    assert "Credited invoice KDE-000002" in note_text
    assert "€50.00" in note_text
