"""The demo organization `./scripts/run` starts with, so there is something to explore."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kassa.catalog import coupons, meters, plans
from kassa.catalog.schemas import ChargeIn, CouponIn, MeterIn, PlanIn
from kassa.core.context import Principal, Role
from kassa.customers import service as customers
from kassa.customers.schemas import CustomerIn, TaxInfo
from kassa.db import rls
from kassa.identity import members, service
from kassa.identity.models import ApiKey, Membership
from kassa.metering import ingest
from kassa.orgs import service as orgs
from kassa.orgs.schemas import Address
from kassa.runtime import Runtime
from kassa.subscriptions import service as subscriptions
from kassa.subscriptions.schemas import SubscriptionIn

DEMO_EMAIL = "demo@kassa.dev"
DEMO_PASSWORD = "kassa-demo-password"  # noqa: S105 - published demo login, test mode only
DEMO_ORG = "Kassa Demo"
DEMO_KEY_NAME = "demo (printed at start)"


@dataclass(frozen=True)
class DemoLogin:
    org_id: str
    email: str
    password: str
    api_key: str


def seed(session: Session, owner: Principal, rt: Runtime) -> None:
    """Something to explore: a landlord's catalog, renters, subscriptions and usage."""
    clock = rt.clock
    now = clock.now()
    meters.create(
        session,
        owner,
        MeterIn(
            event_name="kwh",
            name="Electricity",
            aggregation="sum",
            value_property="kwh",
            unit="kWh",
        ),
        clock,
    )
    meters.create(
        session, owner, MeterIn(event_name="api_call", name="API calls", aggregation="count"), clock
    )
    energy = ChargeIn(
        meter="kwh",
        model="graduated",
        properties={
            "tiers": [{"up_to": 100, "unit_amount": "32"}, {"up_to": None, "unit_amount": "28"}]
        },
    )
    for code, name, amount in (("room-s", "Small room", 60000), ("room-l", "Large room", 80000)):
        plans.create(
            session,
            owner,
            PlanIn(
                code=code,
                name=name,
                currency="eur",
                interval="month",
                amount=amount,
                charges=[energy],
            ),
            clock,
        )
    plans.create(
        session,
        owner,
        PlanIn(
            code="api-pro",
            name="API Pro",
            currency="eur",
            interval="month",
            amount=4900,
            trial_days=14,
            entitlements={"seats": 5, "sso": True},
            charges=[
                ChargeIn(
                    meter="api_call",
                    model="package",
                    properties={"package_size": 1000, "package_amount": 200, "free_units": 10000},
                )
            ],
        ),
        clock,
    )
    coupons.create(
        session,
        owner,
        CouponIn(code="WELCOME10", percent_off="10", duration="repeating", duration_in_periods=3),
        clock,
    )
    renters = [
        ("Anna Becker", "flat-1", "room-s"),
        ("Jonas Weber", "flat-2", "room-l"),
        ("Mia Schulz", "flat-3", "room-s"),
    ]
    start = (now - timedelta(days=75)).replace(hour=0, minute=0, second=0, microsecond=0)
    for name, ref, plan in renters:
        customers.create(
            session,
            owner,
            CustomerIn(
                name=name,
                external_id=ref,
                timezone="Europe/Berlin",
                address=Address(country="DE", city="Berlin"),
            ),
            clock,
        )
        subscriptions.create(
            session,
            owner,
            SubscriptionIn(
                customer=ref,
                plan=plan,
                start_at=start,
                coupon="WELCOME10" if ref == "flat-1" else None,
            ),
            clock,
        )
    customers.create(
        session,
        owner,
        CustomerIn(name="Acme API GmbH", external_id="acme", tax=TaxInfo(kind="business")),
        clock,
    )
    subscriptions.create(session, owner, SubscriptionIn(customer="acme", plan="api-pro"), clock)
    events = [
        {
            "event_id": f"demo-kwh-{ref}-{day}",
            "customer": ref,
            "event_name": "kwh",
            "timestamp": (start + timedelta(days=day, hours=18)).isoformat(),
            "properties": {"kwh": 4 + (day * 7 + i * 3) % 9},
        }
        for i, (_, ref, _) in enumerate(renters)
        for day in range(74)
    ]
    events += [
        {
            "event_id": f"demo-api-{n}",
            "customer": "acme",
            "event_name": "api_call",
            "timestamp": (now - timedelta(minutes=n)).isoformat(),
        }
        for n in range(1, 400)
    ]
    ingest.ingest(session, owner.org_id, events, now, timedelta(minutes=5))


def ensure_demo(rt: Runtime) -> DemoLogin:
    """Create the demo org and owner once; mint a fresh API key each start (older demo
    keys are revoked, since a key can only be shown once)."""
    now = rt.clock.now()
    with rt.db.transaction() as session:
        user = service.find_user(session, DEMO_EMAIL, lock=True)
        org_id: str | None = None
        seeded = False
        if user is not None:
            rls.set_user(session, user.id)
            org_id = session.scalars(
                select(Membership.org_id).where(Membership.user_id == user.id).limit(1)
            ).first()
        if user is None:
            user = service.create_user(session, DEMO_EMAIL, DEMO_PASSWORD, "Demo Owner", now)
        if org_id is None:
            org = orgs.create_org(
                session,
                name=DEMO_ORG,
                now=now,
                country="DE",
                currency="eur",
                timezone="Europe/Berlin",
            )
            org_id = org.id
            service.add_membership(session, org_id, user.id, Role.OWNER, now)
            seed(session, Principal(org_id=org_id, role=Role.OWNER, user_id=user.id), rt)
            seeded = True
        rls.set_org(session, org_id)
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.org_id == org_id, ApiKey.name == DEMO_KEY_NAME, ApiKey.revoked_at.is_(None)
            )
            .values(revoked_at=now)
        )
        owner = Principal(org_id=org_id, role=Role.OWNER, user_id=user.id)
        _, secret = members.create_api_key(session, owner, DEMO_KEY_NAME, None, now)
    if seeded:
        _settle(rt, org_id)
    return DemoLogin(org_id, DEMO_EMAIL, DEMO_PASSWORD, secret)


def _settle(rt: Runtime, org_id: str) -> None:
    """Bill what the back-dated subscriptions owe, then pay most of it and credit a little,
    so invoices, credit notes, balances, statements and the ledger all have something."""
    from kassa.invoicing import billing, credit_notes
    from kassa.invoicing import service as invoicing
    from kassa.invoicing.models import Invoice
    from kassa.invoicing.schemas import CreditNoteIn

    billing.run(rt.db, rt.clock, org_id=org_id)
    now = rt.clock.now()
    with rt.db.transaction(org_id) as session:
        open_invoices = session.scalars(
            select(Invoice)
            .where(Invoice.org_id == org_id, Invoice.status == "open")
            .order_by(Invoice.finalized_at, Invoice.id)
        ).all()
        for n, invoice in enumerate(open_invoices[:-3]):
            if n == 1:
                credit_notes.create(
                    session, org_id,
                    CreditNoteIn(invoice=invoice.id, amount=min(2500, invoice.amount_due),
                                 reason="product_unsatisfactory", memo="Heating outage"),
                    now, rt.clock,
                )  # fmt: skip
            if invoice.amount_due:
                invoicing.record_payment(
                    session, invoice, invoice.amount_due, "cash", f"demo-{invoice.id}", now,
                    rt.clock,
                )  # fmt: skip
