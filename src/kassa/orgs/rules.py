"""Pure validation of organization settings (ISO codes, zones, numbering prefix)."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from zoneinfo import available_timezones

from babel import Locale
from babel.numbers import list_currencies

TAX_RULESETS = ("none", "eu_vat", "gb_vat", "au_gst")
# CLDR pseudo-regions with two-letter codes: unknown, EU, eurozone, UN, outlying, pseudo
_NOT_COUNTRIES = frozenset({"ZZ", "EU", "EZ", "UN", "QO", "XA", "XB"})
_PREFIX = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,11}$")


@cache
def _countries() -> frozenset[str]:
    codes = (str(code) for code in Locale("en").territories)
    return frozenset(
        code for code in codes if re.fullmatch(r"[A-Z]{2}", code) and code not in _NOT_COUNTRIES
    )


@cache
def _currencies() -> frozenset[str]:
    return frozenset(code.lower() for code in list_currencies())


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_country(code: str) -> bool:
    return code in _countries()


def is_currency(code: str) -> bool:
    return code in _currencies()


def is_timezone(name: str) -> bool:
    return name in _zones()


def is_invoice_prefix(prefix: str) -> bool:
    return _PREFIX.fullmatch(prefix) is not None


def normalize_iban(value: str) -> str:
    """The IBAN in its compact form ("DE89370400440532013000"); ``ValueError`` when its
    length, country format or check digits are wrong (schwifty, no registry lookup)."""
    from schwifty import IBAN

    try:
        return str(IBAN(value).compact)
    except ValueError as exc:
        raise ValueError(f"is not a valid IBAN: {exc}") from None


def normalize_bic(value: str) -> str:
    """The BIC (SWIFT code) in upper case, 8 or 11 characters; ``ValueError`` when malformed."""
    from schwifty import BIC

    try:
        return str(BIC(value).compact)
    except ValueError as exc:
        raise ValueError(f"is not a valid BIC: {exc}") from None


def invoice_prefix_for(name: str) -> str:
    """A default numbering prefix from an org name: "Acme Rentals GmbH" → "ACME"."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_name)
    prefix = (words[0] if words else "INV").upper()[:8]
    return prefix if is_invoice_prefix(prefix) else "INV"
