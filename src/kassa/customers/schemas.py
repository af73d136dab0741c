from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from babel import Locale, UnknownLocaleError
from pydantic import BaseModel, EmailStr, Field, field_validator

from kassa.core.schemas import Metadata, Strict
from kassa.orgs.schemas import Address, check_currency, check_timezone


def check_locale(value: str | None) -> str | None:
    """A locale the documents can be written in: babel must know it (``zz`` fits the pattern
    but made every PDF of the customer a 500)."""
    if value is not None:
        try:
            Locale.parse(value.replace("-", "_"))
        except (ValueError, UnknownLocaleError):
            raise ValueError("must be a known locale, e.g. de or de_AT") from None
    return value


class TaxInfo(Strict):
    exempt: bool = False
    tax_id: str | None = Field(default=None, max_length=64)
    kind: Literal["individual", "business"] = "individual"


class CustomerIn(Strict):
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9 ()./-]{3,40}$")
    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    currency: str | None = None
    timezone: str | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2,3}([_-][A-Za-z]{2,4})?$")
    address: Address | None = None
    tax: TaxInfo | None = None
    buyer_reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The buyer's reference for its invoices (EN 16931 BT-10, e.g. XRechnung's "
        "Leitweg-ID); copied into each invoice at finalization",
    )
    test_clock: str | None = Field(default=None, description="Test clock id (test mode only)")
    metadata: Metadata | None = None

    _currency = field_validator("currency")(check_currency)
    _timezone = field_validator("timezone")(check_timezone)
    _locale = field_validator("locale")(check_locale)


class CustomerPatch(Strict):
    name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=40, pattern=r"^\+?[0-9 ()./-]{3,40}$")
    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    currency: str | None = None
    timezone: str | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2,3}([_-][A-Za-z]{2,4})?$")
    address: Address | None = None
    tax: TaxInfo | None = None
    buyer_reference: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The buyer's reference for its invoices (EN 16931 BT-10, e.g. XRechnung's "
        "Leitweg-ID); copied into each invoice at finalization",
    )
    metadata: Metadata | None = None

    _currency = field_validator("currency")(check_currency)
    _timezone = field_validator("timezone")(check_timezone)
    _locale = field_validator("locale")(check_locale)


class Customer(BaseModel):
    id: str
    object: Literal["customer"] = "customer"
    external_id: str | None
    name: str | None
    email: str | None
    phone: str | None
    currency: str | None
    timezone: str | None
    locale: str | None
    address: dict[str, Any] | None
    tax: TaxInfo
    buyer_reference: str | None = None
    test_clock: str | None
    metadata: dict[str, str]
    created_at: datetime
    deleted: bool = False
    deleted_at: datetime | None = None
    anonymized: bool = False
