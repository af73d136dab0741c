from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field, field_validator

from kassa.core.schemas import Metadata, Strict
from kassa.orgs import rules

Mode = Literal["test", "live"]
TaxRuleset = Literal["none", "eu_vat", "gb_vat", "au_gst"]


def check_country(value: str | None) -> str | None:
    if value is not None and not rules.is_country(value.upper()):
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, e.g. DE")
    return value.upper() if value else value


def check_currency(value: str | None) -> str | None:
    if value is not None and not rules.is_currency(value.lower()):
        raise ValueError("must be an ISO 4217 currency code, e.g. eur")
    return value.lower() if value else value


def check_timezone(value: str | None) -> str | None:
    if value is not None and not rules.is_timezone(value):
        raise ValueError("must be an IANA time zone, e.g. Europe/Berlin")
    return value


class Dunning(Strict):
    retry_after_hours: list[int] = Field(default=[1, 24, 72], min_length=1, max_length=10)
    suspend_after_failures: int = Field(default=3, ge=1, le=20)

    @field_validator("retry_after_hours")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if any(h < 1 or h > 24 * 60 for h in value):
            raise ValueError("each retry must be 1 to 1440 hours after the failure")
        if value != sorted(set(value)):
            raise ValueError("must be strictly ascending")
        return value


class Address(Strict):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    region: str | None = Field(default=None, max_length=100)
    country: str | None = None

    _country = field_validator("country")(check_country)


class Org(BaseModel):
    id: str
    object: Literal["organization"] = "organization"
    name: str
    country: str | None
    currency: str
    timezone: str
    mode: Mode
    tax_ruleset: TaxRuleset
    invoice_prefix: str
    dunning: Dunning
    late_usage: Literal["reject", "adjust"] = Field(
        description="Usage for an already invoiced period: reject it, or bill the difference"
    )
    invoice_grace_seconds: int = Field(description="How long an invoice stays a draft")
    payment_terms_days: int = Field(description="Due date = finalization + this many days")
    address: dict[str, str] | None = Field(description="The seller address on invoices")
    tax_id: str | None
    email: str | None
    payment_instructions: str | None = Field(description="Printed on invoices")
    iban: str | None = Field(
        description="The account invoices are paid to (EN 16931 payment means: SEPA credit "
        "transfer for EUR invoices, credit transfer otherwise)"
    )
    bic: str | None = Field(description="The BIC of the bank holding the IBAN")
    metadata: dict[str, str]
    created_at: datetime


class OrgPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    country: str | None = None
    currency: str | None = None
    timezone: str | None = None
    mode: Mode | None = None
    tax_ruleset: TaxRuleset | None = None
    invoice_prefix: str | None = None
    dunning: Dunning | None = None
    late_usage: Literal["reject", "adjust"] | None = None
    invoice_grace_seconds: int | None = Field(default=None, ge=0, le=30 * 86_400)
    payment_terms_days: int | None = Field(default=None, ge=0, le=365)
    address: Address | None = None
    tax_id: str | None = Field(default=None, min_length=2, max_length=64)
    email: EmailStr | None = None
    payment_instructions: str | None = Field(default=None, max_length=1000)
    iban: str | None = Field(
        default=None,
        max_length=50,
        description="Validated (check digits, country format); null removes it (and the BIC)",
    )
    bic: str | None = Field(default=None, max_length=20, description="null removes it")
    metadata: Metadata | None = None

    _country = field_validator("country")(check_country)
    _currency = field_validator("currency")(check_currency)
    _timezone = field_validator("timezone")(check_timezone)

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        return None if value is None else rules.normalize_iban(value)

    @field_validator("bic")
    @classmethod
    def _bic(cls, value: str | None) -> str | None:
        return None if value is None else rules.normalize_bic(value)

    @field_validator("invoice_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not rules.is_invoice_prefix(value):
            raise ValueError("1 to 12 of A-Z, 0-9 and '-', starting with a letter or digit")
        return value
