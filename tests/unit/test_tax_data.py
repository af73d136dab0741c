"""The shipped ruleset files: complete, well-formed, and changed by data alone."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from importlib import resources

import pytest

from kassa.orgs.rules import TAX_RULESETS
from kassa.tax.errors import TaxError
from kassa.tax.rules import available_rulesets, load_ruleset, parse_ruleset

EU_27 = frozenset(
    "AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split()
)


def shipped(name: str) -> str:
    return resources.files("kassa.tax").joinpath("data", f"{name}.toml").read_text("utf-8")


def test_the_org_setting_offers_exactly_the_shipped_rulesets() -> None:
    assert sorted(TAX_RULESETS) == list(available_rulesets())


@pytest.mark.parametrize("name", ["none", "eu_vat", "gb_vat", "au_gst"])
def test_every_ruleset_loads_with_a_dated_rate_table(name: str) -> None:
    rules = load_ruleset(name)
    assert rules.name == name
    assert rules.rates_believed_current_as_of == date(2026, 11, 22)
    assert set(rules.rates) == rules.region
    for periods in rules.rates.values():
        assert [p.start for p in periods] == sorted({p.start for p in periods})


def test_regions_and_notes() -> None:
    eu = load_ruleset("eu_vat")
    assert eu.region == EU_27
    assert len(eu.region) == 27
    assert set(eu.tax_ids) == EU_27
    assert eu.tax_ids["GR"].prefix == "EL"
    assert all(eu.tax_ids[c].prefix == c for c in EU_27 - {"GR"})
    assert eu.reverse_charge is True
    assert eu.notes.reverse_charge == (
        "Reverse charge: VAT to be accounted for by the recipient "
        "(Article 196, Council Directive 2006/112/EC)"
    )
    assert (load_ruleset("gb_vat").region, load_ruleset("au_gst").region) == (
        frozenset({"GB"}),
        frozenset({"AU"}),
    )
    none = load_ruleset("none")
    assert (none.charges_tax, none.region, none.notes.exempt) == (False, frozenset(), None)


def test_a_rate_change_is_a_data_change() -> None:
    text = shipped("eu_vat")
    current = '  { rate = "19", from = 2021-01-01 },\n'
    assert text.count(current) == 1
    changed = parse_ruleset(
        "eu_vat", text.replace(current, current + '  { rate = "21.5", from = 2027-01-01 },\n')
    )
    assert changed.rate_on("DE", date(2026, 12, 31)) == Decimal(19)
    assert changed.rate_on("DE", date(2027, 1, 1)) == Decimal("21.5")


MINIMAL = """
schema = 1
name = "test"
title = "Test"
tax_name = "VAT"
charges_tax = true
reverse_charge = false
rates_believed_current_as_of = 2026-11-22
region = ["DE"]
[notes]
reverse_charge = ""
exempt = "Exempt"
outside_scope = "Outside"
[countries.DE]
tax_id = { prefix = "DE", pattern = '\\d{9}' }
rates = [{ rate = "16", from = 2020-07-01 }, { rate = "19", from = 2021-01-01 }]
"""


def test_minimal_ruleset_parses() -> None:
    rules = parse_ruleset("test", MINIMAL)
    assert rules.rate_on("DE", date(2020, 12, 31)) == Decimal(16)
    assert rules.notes.reverse_charge is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('rate = "16"', "rate = 16.0", "`rate` must be a TOML str"),
        ('rate = "16"', 'rate = "-1"', "not a non-negative decimal"),
        ('rate = "16"', 'rate = "abc"', "not a non-negative decimal"),
        ("from = 2020-07-01", "from = 2022-07-01", "increasing `from` order"),
        ("from = 2020-07-01", "from = 2020-07-01T00:00:00Z", "`from` must be a TOML date"),
        ('region = ["DE"]', 'region = ["DE", "FR"]', "same countries once"),
        ('region = ["DE"]', 'region = ["de"]', "alpha-2"),
        ('name = "test"', 'name = "other"', "must match the file name"),
        ("schema = 1", "schema = 2", "unsupported schema"),
        ("charges_tax = true", 'charges_tax = "yes"', "`charges_tax` must be a TOML bool"),
        ('exempt = "Exempt"', "", "`exempt` is missing"),
        ("'\\d{9}' }", "'\\d{9}', checksum = \"luhn\" }", "unknown tax id checksum"),
        ("'\\d{9}'", "'(\\d{9}'", "bad tax id pattern"),
        ("rates = [{", "rates = [] #", "at least one rate period"),
        ("title =", "title = = ", "ruleset test:"),
    ],
)
def test_malformed_data_is_refused(old: str, new: str, message: str) -> None:
    assert old in MINIMAL
    with pytest.raises(TaxError, match=message):
        parse_ruleset("test", MINIMAL.replace(old, new, 1))


def test_a_ruleset_that_charges_tax_needs_a_region() -> None:
    text = MINIMAL.replace('region = ["DE"]', "region = []").split("[countries.DE]")[0]
    with pytest.raises(TaxError, match="needs a region"):
        parse_ruleset("test", text)
