"""Pure tax rules: which category and rate apply, tax-id formats, EN 16931 tax totals.

Rates, regions, invoice notes and tax-id formats are data (``kassa/tax/data/<ruleset>.toml``);
this module holds the only code path, the same for every ruleset:

1. ruleset that charges no tax (``none``) → ``O``, 0 %, no note;
2. seller country outside the ruleset's region → :class:`TaxError` (a configuration error);
3. customer exempt → ``E``, 0 %, the exempt note;
4. customer country unknown or outside the region → ``O``, 0 %, the out-of-scope note;
5. customer in the seller's country → ``S`` at the seller country's rate;
6. cross-border, ruleset with reverse charge, business customer with a valid-format tax id →
   ``AE``, 0 %, the reverse-charge note;
7. other cross-border sales inside the region → ``S`` at the customer country's rate (OSS).

Categories are UNCL5305 codes as used by EN 16931. Amounts are integer minor units; tax is
rounded once per (category, rate) group, never per line (EN 16931 BR-CO-17).
"""

from __future__ import annotations

import bisect
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from functools import cache, lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from itertools import pairwise
from typing import Any, Literal, TypeVar

from kassa.core.money import multiply, round_minor
from kassa.tax.errors import TaxError

STANDARD = "S"
REVERSE_CHARGE = "AE"
OUTSIDE_SCOPE = "O"
EXEMPT = "E"
ZERO_RATED = "Z"
# EN 16931 VAT category codes (UNCL5305 subset); all but S, L and M require a 0 % rate.
CATEGORIES = frozenset({"S", "Z", "E", "AE", "K", "G", "O", "L", "M"})
_ZERO_RATE_CATEGORIES = frozenset({"Z", "E", "AE", "K", "G", "O"})

_DATA_PACKAGE = "kassa.tax"
_DATA_DIR = "data"
_RULESET_NAME = re.compile(r"[a-z][a-z0-9_]*")
_TAX_ID_SEPARATORS = re.compile(r"[\s.\-]+")
_COUNTRY_ALIASES = {"EL": "GR"}  # Greece's VAT prefix is accepted where a country is expected
_ZERO = Decimal(0)
_T = TypeVar("_T")


@dataclass(frozen=True)
class TaxParty:
    """Who is billed, as far as tax is concerned."""

    country: str | None  # ISO 3166-1 alpha-2 ("DE", "GR"); None when unknown
    kind: Literal["individual", "business"] = "individual"
    tax_id: str | None = None
    exempt: bool = False


@dataclass(frozen=True)
class TaxDecision:
    category: str  # EN 16931 / UNCL5305: "S", "AE", "O", "E", "Z", …
    rate: Decimal  # percent, e.g. Decimal("19")
    country: str | None  # whose tax applies (place of supply); None when outside the scope
    note: str | None  # text the invoice must carry, if any


@dataclass(frozen=True)
class TaxLine:
    """One row of an invoice's tax breakdown (EN 16931 BG-23)."""

    category: str
    rate: Decimal
    taxable_amount: int
    amount: int


@dataclass(frozen=True)
class RatePeriod:
    rate: Decimal
    start: date  # in force from this day until the next period's start


@dataclass(frozen=True)
class TaxIdFormat:
    prefix: str  # printed before the number ("DE", "EL" for Greece, "" for an ABN)
    pattern: re.Pattern[str]  # the number after the prefix
    checksum: str | None = None


@dataclass(frozen=True)
class Notes:
    reverse_charge: str | None
    exempt: str | None
    outside_scope: str | None


@dataclass(frozen=True)
class Ruleset:
    name: str
    title: str
    tax_name: str
    charges_tax: bool
    reverse_charge: bool
    region: frozenset[str]
    notes: Notes
    rates: Mapping[str, tuple[RatePeriod, ...]]
    tax_ids: Mapping[str, TaxIdFormat]
    rates_believed_current_as_of: date

    def rate_on(self, country: str, on: date) -> Decimal:
        """The standard rate (percent) in ``country`` on the day ``on``."""
        periods = self.rates.get(country)
        if not periods:
            raise TaxError(f"ruleset {self.name!r} has no rates for {country!r}")
        index = bisect.bisect_right([p.start for p in periods], on) - 1
        if index < 0:
            raise TaxError(
                f"ruleset {self.name!r} has no rate for {country!r} before {periods[0].start}"
            )
        return periods[index].rate


# --- the rules ------------------------------------------------------------------------------


def determine(
    ruleset: str, seller_country: str | None, customer: TaxParty, on: date
) -> TaxDecision:
    """Tax category, rate and invoice note for a sale on the day ``on`` (the tax point)."""
    rules = load_ruleset(ruleset)
    if not rules.charges_tax:
        return TaxDecision(OUTSIDE_SCOPE, _ZERO, None, None)
    seller = _country(seller_country)
    if seller is None or seller not in rules.region:
        raise TaxError(
            f"ruleset {ruleset!r} needs a seller established in one of "
            f"{', '.join(sorted(rules.region))}; the seller country is {seller_country!r}"
        )
    buyer = _country(customer.country)
    if customer.exempt:
        return TaxDecision(EXEMPT, _ZERO, buyer, rules.notes.exempt)
    if buyer is None or buyer not in rules.region:
        return TaxDecision(OUTSIDE_SCOPE, _ZERO, None, rules.notes.outside_scope)
    if buyer == seller:
        return TaxDecision(STANDARD, rules.rate_on(seller, on), seller, None)
    if (
        rules.reverse_charge
        and customer.kind == "business"
        and customer.tax_id is not None
        and validate_tax_id(buyer, customer.tax_id) is not None
    ):
        return TaxDecision(REVERSE_CHARGE, _ZERO, buyer, rules.notes.reverse_charge)
    return TaxDecision(STANDARD, rules.rate_on(buyer, on), buyer, None)


def knows_tax_id_format(country: str) -> bool:
    """Whether some ruleset defines the tax-id format of ``country``."""
    code = _country(country)
    return code is not None and code in _tax_id_formats()


def validate_tax_id(country: str, tax_id: str) -> str | None:
    """The normalized tax id if its format fits ``country``, else None (no registry lookup).

    Normalized: upper case, without spaces, dots or dashes, with the VAT prefix where the
    country has one (``"EL"`` for Greece, ``"GB"``; an Australian ABN is 11 bare digits).
    The prefix may be omitted in the input.
    """
    code = _country(country)
    spec = _tax_id_formats().get(code) if code else None
    if spec is None or code is None:
        return None
    raw = _TAX_ID_SEPARATORS.sub("", tax_id).upper()
    # A number that starts with the country's prefix is read as prefixed ("FR303265045" is a
    # French number missing its key, not the key "FR"). Without its own prefix, a number must
    # not start with another country's ("DE136695976" is no French number with the key "DE").
    bodies = [raw[len(p) :] for p in (spec.prefix, code) if p and raw.startswith(p)]
    if not bodies:
        if raw[:2] in _tax_id_prefixes():
            return None
        bodies = [raw]
    for body in bodies:
        if spec.pattern.fullmatch(body) and _checksum_ok(spec.checksum, body):
            return spec.prefix + body
    return None


def compute_tax(lines: Sequence[tuple[TaxDecision, int]]) -> list[TaxLine]:
    """EN 16931 tax breakdown: one row per (category, rate), rounded once per row.

    ``lines`` are (decision, net amount in minor units); amounts may be negative (discounts,
    credits). Rows come by rate descending, then category, whatever the order of the lines.
    """
    taxable: dict[tuple[str, Decimal], int] = {}
    for decision, amount in lines:
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"line amounts are int minor units, not {type(amount).__name__}")
        key = _row_key(decision.category, decision.rate)
        taxable[key] = taxable.get(key, 0) + amount
    rows = [
        TaxLine(category, rate, total, round_minor(_percent_of(total, rate)))
        for (category, rate), total in taxable.items()
    ]
    rows.sort(key=lambda row: (-row.rate, row.category))
    return rows


def available_rulesets() -> tuple[str, ...]:
    """Names of the shipped rulesets, sorted (one per ``data/*.toml`` file)."""
    return _ruleset_names()


def rate_on(ruleset: str, country: str, on: date) -> Decimal:
    """The standard rate (percent) of ``country`` in ``ruleset`` on the day ``on``."""
    code = _country(country)
    if code is None:
        raise TaxError("a country is needed to look up a tax rate")
    return load_ruleset(ruleset).rate_on(code, on)


@cache
def load_ruleset(name: str) -> Ruleset:
    """The parsed, validated ruleset ``name`` (read once per process)."""
    if name not in _ruleset_names():
        raise TaxError(f"unknown tax ruleset {name!r}")
    data = _data_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_ruleset(name, data)


def parse_ruleset(name: str, text: str) -> Ruleset:
    """Parse and validate one ruleset file's text; malformed data raises :class:`TaxError`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaxError(f"ruleset {name}: {exc}") from None
    where = f"ruleset {name}"
    if _get(doc, "schema", int, where) != 1:
        raise TaxError(f"{where}: unsupported schema")
    if _get(doc, "name", str, where) != name:
        raise TaxError(f"{where}: `name` must match the file name")
    notes = _get(doc, "notes", dict, where)
    region = _get(doc, "region", list, where)
    if not all(isinstance(c, str) and re.fullmatch(r"[A-Z]{2}", c) for c in region):
        raise TaxError(f"{where}: region lists ISO 3166 alpha-2 codes")
    countries = _get_optional(doc, "countries", dict, where) or {}
    if set(countries) != set(region) or len(region) != len(set(region)):
        raise TaxError(f"{where}: `region` and [countries.*] must list the same countries once")
    rates: dict[str, tuple[RatePeriod, ...]] = {}
    tax_ids: dict[str, TaxIdFormat] = {}
    for code, entry in countries.items():
        at = f"{where}, country {code}"
        rates[code] = _parse_periods(_get(entry, "rates", list, at), at)
        tax_id = _get_optional(entry, "tax_id", dict, at)
        if tax_id is not None:
            tax_ids[code] = _parse_tax_id(tax_id, at)
    charges_tax = _get(doc, "charges_tax", bool, where)
    if charges_tax and not region:
        raise TaxError(f"{where}: a ruleset that charges tax needs a region")
    return Ruleset(
        name=name,
        title=_get(doc, "title", str, where),
        tax_name=_get(doc, "tax_name", str, where),
        charges_tax=charges_tax,
        reverse_charge=_get(doc, "reverse_charge", bool, where),
        region=frozenset(region),
        notes=Notes(
            reverse_charge=_get(notes, "reverse_charge", str, where) or None,
            exempt=_get(notes, "exempt", str, where) or None,
            outside_scope=_get(notes, "outside_scope", str, where) or None,
        ),
        rates=rates,
        tax_ids=tax_ids,
        rates_believed_current_as_of=_get(doc, "rates_believed_current_as_of", date, where),
    )


# --- helpers --------------------------------------------------------------------------------


def _country(code: str | None) -> str | None:
    if code is None or not code.strip():
        return None
    upper = code.strip().upper()
    return _COUNTRY_ALIASES.get(upper, upper)


def _row_key(category: str, rate: Decimal) -> tuple[str, Decimal]:
    """(category, canonical rate) of a valid pair; raises ValueError for an invalid one."""
    if not isinstance(rate, Decimal) or not rate.is_finite():
        _canonical_rate(rate)  # (raises)
    return _valid_row_key(category, rate)


@lru_cache(maxsize=256)  # pure: a billing run asks for the same few pairs, once per invoice
def _valid_row_key(category: str, rate: Decimal) -> tuple[str, Decimal]:
    canonical = _canonical_rate(rate)
    _check_category(category, canonical)
    return category, canonical


def _canonical_rate(rate: Decimal) -> Decimal:
    """One spelling per rate ("19.0" and "19" group together and print as "19")."""
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate < 0:
        raise ValueError(f"a tax rate is a finite, non-negative Decimal, not {rate!r}")
    normal = rate.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def _check_category(category: str, rate: Decimal) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown tax category {category!r}")
    if category in _ZERO_RATE_CATEGORIES and rate != 0:
        raise ValueError(f"category {category} has a 0 % rate, not {rate} %")
    if category == STANDARD and rate == 0:
        raise ValueError("category S needs a rate above 0 % (use Z for zero-rated)")


def _percent_of(amount: int, rate: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        return multiply(amount, rate) / 100


def _abn_checksum_ok(digits: str) -> bool:
    """ABN: subtract 1 from the first digit; the weighted sum is divisible by 89."""
    weights = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)
    values = [int(d) for d in digits]
    values[0] -= 1
    return sum(w * v for w, v in zip(weights, values, strict=True)) % 89 == 0


_CHECKSUMS: dict[str, Callable[[str], bool]] = {"abn": _abn_checksum_ok}


def _checksum_ok(name: str | None, body: str) -> bool:
    return name is None or _CHECKSUMS[name](body)


def _parse_periods(items: list[Any], where: str) -> tuple[RatePeriod, ...]:
    periods: list[RatePeriod] = []
    for item in items:
        if not isinstance(item, dict):
            raise TaxError(f'{where}: each rate is a table {{ rate = "…", from = YYYY-MM-DD }}')
        text = _get(item, "rate", str, where)
        try:
            rate = _canonical_rate(Decimal(text))
        except (ArithmeticError, ValueError):
            raise TaxError(f"{where}: rate {text!r} is not a non-negative decimal") from None
        periods.append(RatePeriod(rate, _get(item, "from", date, where)))
    if not periods:
        raise TaxError(f"{where}: at least one rate period is needed")
    starts = [p.start for p in periods]
    if any(a >= b for a, b in pairwise(starts)):
        raise TaxError(f"{where}: rate periods must be in increasing `from` order")
    return tuple(periods)


def _parse_tax_id(table: dict[str, Any], where: str) -> TaxIdFormat:
    pattern = _get(table, "pattern", str, where)
    checksum = _get_optional(table, "checksum", str, where)
    if checksum is not None and checksum not in _CHECKSUMS:
        raise TaxError(f"{where}: unknown tax id checksum {checksum!r}")
    try:
        # ASCII: \d must not accept other scripts' digits.
        compiled = re.compile(f"(?:{pattern})", re.ASCII)
    except re.error as exc:
        raise TaxError(f"{where}: bad tax id pattern: {exc}") from None
    return TaxIdFormat(_get(table, "prefix", str, where), compiled, checksum)


def _get(table: dict[str, Any], key: str, kind: type[_T], where: str) -> _T:
    value = _get_optional(table, key, kind, where)
    if value is None:
        raise TaxError(f"{where}: `{key}` is missing")
    return value


def _get_optional(table: dict[str, Any], key: str, kind: type[_T], where: str) -> _T | None:
    value = table.get(key)
    # Exact types: a bool is an int and a datetime is a date, neither is accepted for the other.
    if value is not None and type(value) is not kind:
        raise TaxError(f"{where}: `{key}` must be a TOML {kind.__name__}")
    return value


def _data_dir() -> Traversable:
    return resources.files(_DATA_PACKAGE).joinpath(_DATA_DIR)


@cache
def _ruleset_names() -> tuple[str, ...]:
    names = (
        entry.name.removesuffix(".toml")
        for entry in _data_dir().iterdir()
        if entry.name.endswith(".toml")
    )
    return tuple(sorted(n for n in names if _RULESET_NAME.fullmatch(n)))


@cache
def _tax_id_formats() -> Mapping[str, TaxIdFormat]:
    formats: dict[str, TaxIdFormat] = {}
    for name in _ruleset_names():
        for code, spec in load_ruleset(name).tax_ids.items():
            if formats.setdefault(code, spec) != spec:
                raise TaxError(f"rulesets disagree on the tax id format of {code}")
    return formats


@cache
def _tax_id_prefixes() -> frozenset[str]:
    formats = _tax_id_formats()
    return frozenset(formats) | {spec.prefix for spec in formats.values() if spec.prefix}
