"""Every table's model imported once, so metadata is complete (migrations, schema tests)."""

from __future__ import annotations

from kassa.catalog.models import Coupon, Meter, Plan, PlanVersion
from kassa.clocks.models import TestClock
from kassa.core.idempotency import IdempotencyRecord
from kassa.customers.models import Customer
from kassa.db.base import Base
from kassa.events.models import DomainEvent
from kassa.identity.models import ApiKey, Membership, RefreshToken, SigningKey, User
from kassa.invoicing.models import CreditNote, Invoice, InvoiceCounter, InvoiceLine
from kassa.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from kassa.metering.models import (
    UsageAnomaly,
    UsageEvent,
    UsageRollup,
    UsageSeries,
    UsageUniqueValue,
)
from kassa.orgs.models import Organization
from kassa.readings.models import MeterPoint, MeterReading
from kassa.subscriptions.models import Adjustment, Subscription

metadata = Base.metadata

__all__ = [
    "Adjustment",
    "ApiKey",
    "Coupon",
    "CreditNote",
    "Invoice",
    "InvoiceCounter",
    "InvoiceLine",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerTransaction",
    "Customer",
    "DomainEvent",
    "Meter",
    "MeterPoint",
    "MeterReading",
    "Plan",
    "PlanVersion",
    "Subscription",
    "TestClock",
    "UsageAnomaly",
    "UsageEvent",
    "UsageRollup",
    "UsageSeries",
    "UsageUniqueValue",
    "IdempotencyRecord",
    "Membership",
    "Organization",
    "RefreshToken",
    "SigningKey",
    "User",
    "metadata",
]
