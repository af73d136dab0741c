from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kassa.tax.errors import TaxError
from kassa.tax.rules import (
    TaxDecision,
    TaxLine,
    TaxParty,
    available_rulesets,
    compute_tax,
    determine,
    rate_on,
    validate_tax_id,
)

DAY = date(2026, 11, 22)
REVERSE_CHARGE_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Article 196, Council Directive 2006/112/EC)"
)
FR_VAT = "FR40303265045"
EU_RATES_2026 = {
    "AT": "20", "BE": "21", "BG": "20", "CY": "19", "CZ": "21", "DE": "19", "DK": "25",
    "EE": "24", "ES": "21", "FI": "25.5", "FR": "20", "GR": "24", "HR": "25", "HU": "27",
    "IE": "23", "IT": "22", "LT": "21", "LU": "17", "LV": "21", "MT": "18", "NL": "21",
    "PL": "23", "PT": "23", "RO": "21", "SE": "25", "SI": "22", "SK": "23",
}  # fmt: skip


def person(country: str | None) -> TaxParty:
    return TaxParty(country=country)


def business(country: str | None, tax_id: str | None) -> TaxParty:
    return TaxParty(country=country, kind="business", tax_id=tax_id)


def s(rate: str, country: str | None = None) -> TaxDecision:
    return TaxDecision("S", Decimal(rate), country, None)


# --- determine: one test per rule path -------------------------------------------------------


def test_available_rulesets() -> None:
    assert available_rulesets() == ("au_gst", "eu_vat", "gb_vat", "none")


def test_eu_domestic_uses_seller_rate_for_consumers_and_businesses() -> None:
    expected = TaxDecision("S", Decimal("19"), "DE", None)
    assert determine("eu_vat", "DE", person("DE"), DAY) == expected
    assert determine("eu_vat", "DE", business("DE", "DE136695976"), DAY) == expected
    assert determine("eu_vat", "de", person("de"), DAY) == expected  # codes are case-blind


def test_eu_cross_border_business_with_valid_id_is_reverse_charged() -> None:
    decision = determine("eu_vat", "DE", business("FR", "fr 40 303 265 045"), DAY)
    assert decision == TaxDecision("AE", Decimal(0), "FR", REVERSE_CHARGE_NOTE)


def test_greek_business_reverse_charge_with_el_prefix() -> None:
    decision = determine("eu_vat", "AT", business("GR", "EL 094 259 216"), DAY)
    assert (decision.category, decision.country) == ("AE", "GR")


def test_eu_cross_border_consumer_pays_destination_rate_oss() -> None:
    assert determine("eu_vat", "DE", person("FR"), DAY) == s("20", "FR")
    assert determine("eu_vat", "DE", person("FI"), DAY) == s("25.5", "FI")
    # A consumer who happens to give a VAT number is still a consumer.
    consumer_with_id = TaxParty("FR", kind="individual", tax_id=FR_VAT)
    assert determine("eu_vat", "DE", consumer_with_id, DAY) == s("20", "FR")


@pytest.mark.parametrize("tax_id", [None, "", "FR123", "DE136695976", "FR 4030326504"])
def test_eu_business_without_valid_id_pays_destination_rate(tax_id: str | None) -> None:
    assert determine("eu_vat", "DE", business("FR", tax_id), DAY) == s("20", "FR")


@pytest.mark.parametrize("country", ["US", "CH", "NO", "GB", "XK", None, "", "  "])
def test_customer_outside_region_or_unknown_is_outside_scope(country: str | None) -> None:
    for customer in (person(country), business(country, "CHE123456789")):
        decision = determine("eu_vat", "DE", customer, DAY)
        assert decision == TaxDecision("O", Decimal(0), None, "Outside the scope of EU VAT")


def test_exempt_customer_pays_nothing_with_exempt_note() -> None:
    exempt = TaxParty("DE", exempt=True)
    assert determine("eu_vat", "DE", exempt, DAY) == TaxDecision(
        "E", Decimal(0), "DE", "Exempt from VAT"
    )
    # Exemption wins over every other path, also outside the region.
    assert determine("eu_vat", "DE", TaxParty("US", exempt=True), DAY).category == "E"
    assert determine("gb_vat", "GB", TaxParty("GB", exempt=True), DAY) == TaxDecision(
        "E", Decimal(0), "GB", "Exempt from VAT"
    )


def test_gb_vat() -> None:
    assert determine("gb_vat", "GB", person("GB"), DAY) == s("20", "GB")
    assert determine("gb_vat", "GB", business("GB", "GB123456789"), DAY) == s("20", "GB")
    for customer in (person("DE"), business("DE", "DE136695976"), person("US")):
        assert determine("gb_vat", "GB", customer, DAY) == TaxDecision(
            "O", Decimal(0), None, "Outside the scope of UK VAT"
        )


def test_au_gst() -> None:
    assert determine("au_gst", "AU", person("AU"), DAY) == s("10", "AU")
    assert determine("au_gst", "AU", business("AU", "51 824 753 556"), DAY) == s("10", "AU")
    outside = determine("au_gst", "AU", person("NZ"), DAY)
    assert (outside.category, outside.rate, outside.country) == ("O", Decimal(0), None)
    assert (
        outside.note == "Not subject to Australian GST (supply for consumption outside Australia)"
    )


@pytest.mark.parametrize("seller", ["DE", "US", None])
def test_ruleset_none_is_outside_scope_without_note(seller: str | None) -> None:
    for customer in (person("DE"), business("FR", FR_VAT), TaxParty("DE", exempt=True)):
        assert determine("none", seller, customer, DAY) == TaxDecision("O", Decimal(0), None, None)


@pytest.mark.parametrize(
    ("ruleset", "seller"),
    [("eu_vat", "US"), ("eu_vat", "GB"), ("eu_vat", None), ("gb_vat", "DE"), ("au_gst", "NZ")],
)
def test_seller_outside_region_is_a_configuration_error(ruleset: str, seller: str | None) -> None:
    with pytest.raises(TaxError, match="needs a seller established") as err:
        determine(ruleset, seller, person("DE"), DAY)
    assert (err.value.status, err.value.code) == (409, "tax_configuration_error")


def test_unknown_ruleset() -> None:
    for name in ("us_sales_tax", "../none", "EU_VAT", ""):
        with pytest.raises(TaxError, match="unknown tax ruleset"):
            determine(name, "DE", person("DE"), DAY)


# --- rates and effective dates ----------------------------------------------------------------


def test_all_27_member_states_have_their_2026_rate() -> None:
    assert len(EU_RATES_2026) == 27
    for country, rate in EU_RATES_2026.items():
        assert rate_on("eu_vat", country, DAY) == Decimal(rate), country
        assert determine("eu_vat", country, person(country), DAY) == s(rate, country)


@pytest.mark.parametrize(
    ("ruleset", "country", "change", "before", "after"),
    [
        ("eu_vat", "EE", date(2024, 1, 1), "20", "22"),
        ("eu_vat", "EE", date(2025, 7, 1), "22", "24"),
        ("eu_vat", "FI", date(2024, 9, 1), "24", "25.5"),
        ("eu_vat", "SK", date(2025, 1, 1), "20", "23"),
        ("eu_vat", "RO", date(2025, 8, 1), "19", "21"),
        ("eu_vat", "DE", date(2020, 7, 1), "19", "16"),
        ("eu_vat", "DE", date(2021, 1, 1), "16", "19"),
        ("eu_vat", "LU", date(2024, 1, 1), "16", "17"),
        ("gb_vat", "GB", date(2011, 1, 4), "17.5", "20"),
    ],
)
def test_rate_switches_on_its_effective_date(
    ruleset: str, country: str, change: date, before: str, after: str
) -> None:
    day_before = date.fromordinal(change.toordinal() - 1)
    assert rate_on(ruleset, country, day_before) == Decimal(before)
    assert rate_on(ruleset, country, change) == Decimal(after)


def test_oss_rate_follows_the_date_of_supply() -> None:
    assert determine("eu_vat", "DE", person("EE"), date(2025, 6, 30)) == s("22", "EE")
    assert determine("eu_vat", "DE", person("EE"), date(2025, 7, 1)) == s("24", "EE")
    assert determine("eu_vat", "FI", person("FI"), date(2024, 8, 31)) == s("24", "FI")
    assert determine("eu_vat", "FI", person("FI"), date(2024, 9, 1)) == s("25.5", "FI")


def test_rate_lookup_errors() -> None:
    with pytest.raises(TaxError, match="no rate for 'EE' before 2009-07-01"):
        rate_on("eu_vat", "EE", date(2009, 6, 30))
    with pytest.raises(TaxError, match="no rates for 'US'"):
        rate_on("eu_vat", "US", DAY)
    with pytest.raises(TaxError, match="a country is needed"):
        rate_on("eu_vat", " ", DAY)
    assert rate_on("au_gst", "au", DAY) == Decimal(10)
    assert rate_on("eu_vat", "EL", DAY) == Decimal(24)  # Greece by its VAT prefix


# --- tax ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "tax_id", "normalized"),
    [
        ("DE", "DE 136 695 976", "DE136695976"),
        ("DE", "136695976", "DE136695976"),  # the prefix may be left out
        ("AT", "atu-1234.5678", "ATU12345678"),
        ("FR", FR_VAT, FR_VAT),
        ("FR", "FR AB 303265045", "FRAB303265045"),
        ("NL", "NL 8174.88.736.B01", "NL817488736B01"),
        ("BE", "BE 0123.456.789", "BE0123456789"),
        ("ES", "ES-B12345678", "ESB12345678"),
        ("ES", "12345678Z", "ES12345678Z"),
        ("IE", "IE 1234567 WA", "IE1234567WA"),
        ("IE", "IE1A23456W", "IE1A23456W"),
        ("SE", "SE 556703748501", "SE556703748501"),
        ("GR", "EL094259216", "EL094259216"),
        ("GR", "GR 094259216", "EL094259216"),  # the ISO code is corrected to "EL"
        ("EL", "094259216", "EL094259216"),
        ("GB", "GB 123 4567 89", "GB123456789"),
        ("GB", "gb123456789012", "GB123456789012"),
        ("GB", "GBGD001", "GBGD001"),
        ("GB", "HA599", "GBHA599"),
        ("AU", "51 824 753 556", "51824753556"),  # the ATO's example ABN
        ("AU", "33-051-775-556", "33051775556"),
    ],
)
def test_valid_tax_ids(country: str, tax_id: str, normalized: str) -> None:
    assert validate_tax_id(country, tax_id) == normalized


@pytest.mark.parametrize(
    ("country", "tax_id"),
    [
        ("DE", "DE12345678"),  # 8 digits
        ("DE", "FR40303265045"),  # another country's number
        ("FR", "DE136695976"),  # … even where it would fit the format without its prefix
        ("DE", "DE١٢٣٤٥٦٧٨٩"),  # non-ASCII digits
        ("AT", "AT12345678"),  # the U is missing
        ("FR", "FRIO303265045"),  # I and O are never used in the key
        ("FR", "FR303265045"),  # the key is missing
        ("NL", "NL123456789B1"),
        ("BE", "BE2123456789"),
        ("ES", "ES123456789"),  # a Spanish number has a letter
        ("SE", "SE123456789012"),  # must end in 01
        ("GB", "GBGD500"),  # government departments are GD000-GD499
        ("GB", "GB12345678"),
        ("AU", "51 824 753 557"),  # ABN checksum fails
        ("AU", "5182475355"),  # 10 digits
        ("US", "123456789"),  # no format known
        ("", "DE136695976"),
        ("DE", ""),
    ],
)
def test_invalid_tax_ids(country: str, tax_id: str) -> None:
    assert validate_tax_id(country, tax_id) is None


# --- compute_tax --------------------------------------------------------------------------


def test_tax_is_rounded_per_group_not_per_line() -> None:
    # Ten lines of 5 cents at 21 %: 1.05 cents tax each. Per line 10 × 1 = 10; per group 10.5 → 11.
    assert compute_tax([(s("21"), 5)] * 10) == [TaxLine("S", Decimal(21), 50, 11)]
    # Three lines of 7 cents at 20 %: 1.4 each → 3 per line; the group's 4.2 → 4.
    assert compute_tax([(s("20"), 7)] * 3) == [TaxLine("S", Decimal(20), 21, 4)]


def test_negative_lines_and_credits() -> None:
    discount = [(s("19"), 10_000), (s("19"), -2_500)]
    assert compute_tax(discount) == [TaxLine("S", Decimal(19), 7_500, 1_425)]
    # Half away from zero also for credits: -199.5 → -200.
    assert compute_tax([(s("19"), -1_050)]) == [TaxLine("S", Decimal(19), -1_050, -200)]
    assert compute_tax([(s("19"), 500), (s("19"), -500)]) == [TaxLine("S", Decimal(19), 0, 0)]


def test_groups_by_category_and_rate_in_a_fixed_order() -> None:
    reverse = TaxDecision("AE", Decimal(0), "FR", REVERSE_CHARGE_NOTE)
    exempt = TaxDecision("E", Decimal(0), "DE", "Exempt from VAT")
    outside = TaxDecision("O", Decimal(0), None, None)
    lines = [
        (outside, 300),
        (s("7"), 1_000),
        (reverse, 200),
        (s("19.0"), 1_000),
        (exempt, 100),
        (s("19"), 1_001),
    ]
    assert compute_tax(lines) == [
        TaxLine("S", Decimal(19), 2_001, 380),
        TaxLine("S", Decimal(7), 1_000, 70),
        TaxLine("AE", Decimal(0), 200, 0),
        TaxLine("E", Decimal(0), 100, 0),
        TaxLine("O", Decimal(0), 300, 0),
    ]
    assert str(compute_tax(lines)[0].rate) == "19"  # "19.0" and "19" are one group, spelled "19"


def test_compute_tax_edge_cases() -> None:
    assert compute_tax([]) == []
    big = 10**15
    assert compute_tax([(s("25.5"), big)]) == [
        TaxLine("S", Decimal("25.5"), big, big * 255 // 1000)
    ]
    # Minor units of any currency: 1 BHD fils at 10 % rounds to 0, 5 yen at 10 % to 1.
    assert compute_tax([(s("10"), 1)])[0].amount == 0
    assert compute_tax([(s("10"), 5)])[0].amount == 1


@pytest.mark.parametrize(
    ("decision", "amount", "error"),
    [
        (TaxDecision("X", Decimal(0), None, None), 100, ValueError),
        (TaxDecision("AE", Decimal(19), "FR", None), 100, ValueError),
        (TaxDecision("S", Decimal(0), "DE", None), 100, ValueError),
        (TaxDecision("S", Decimal(-19), "DE", None), 100, ValueError),
        (TaxDecision("S", Decimal("NaN"), "DE", None), 100, ValueError),
        (TaxDecision("S", Decimal(19), "DE", None), 1.5, TypeError),
        (TaxDecision("S", Decimal(19), "DE", None), True, TypeError),
    ],
)
def test_compute_tax_rejects_nonsense(
    decision: TaxDecision, amount: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        compute_tax([(decision, amount)])  # type: ignore[list-item]


RATES = st.sampled_from(["19", "20", "21", "25.5", "7", "5.5", "10", "0.001", "99.999"]).map(
    Decimal
) | st.decimals(min_value=Decimal("0.001"), max_value=Decimal(100), places=3)
AMOUNTS = st.integers(min_value=-(10**12), max_value=10**12)


@given(RATES, st.lists(AMOUNTS, min_size=1, max_size=30))
@example(Decimal(21), [5] * 10)
@example(Decimal(10), [-5])
def test_group_tax_is_within_half_a_minor_unit(rate: Decimal, amounts: list[int]) -> None:
    (row,) = compute_tax([(s(str(rate)), a) for a in amounts])
    exact = Fraction(sum(amounts)) * Fraction(rate) / 100
    assert row.taxable_amount == sum(amounts)
    assert abs(row.amount - exact) <= Fraction(1, 2)


DECISIONS = st.sampled_from(
    [
        s("19"),
        s("19.00"),
        s("7"),
        s("25.5"),
        TaxDecision("AE", Decimal(0), "FR", REVERSE_CHARGE_NOTE),
        TaxDecision("O", Decimal(0), None, None),
        TaxDecision("E", Decimal(0), None, None),
    ]
)


@given(st.lists(st.tuples(DECISIONS, AMOUNTS), max_size=30), st.randoms(use_true_random=False))
def test_line_order_does_not_change_the_result(
    lines: list[tuple[TaxDecision, int]], rnd: random.Random
) -> None:
    shuffled = list(lines)
    rnd.shuffle(shuffled)
    result = compute_tax(lines)
    assert compute_tax(shuffled) == result
    assert [str(row.rate) for row in compute_tax(shuffled)] == [str(row.rate) for row in result]
    assert sum(row.taxable_amount for row in result) == sum(amount for _, amount in lines)
    assert len({(row.category, row.rate) for row in result}) == len(result)
