"""The billing run's set-based path: a locked chunk of subscriptions (or of due drafts)
billed with a handful of statements instead of a few dozen per invoice.

It takes the common case: an active subscription whose due transition is a plain period
end (a pending plan change rolls over with it), one period behind at most, whose meters the
rollups answer (count, sum, max, latest; no per-event pricing), whose customer has no unused
credit and no other subscription in the chunk. Everything else goes through the
per-subscription engine (``engine.advance``) and ``service.finalize``, unchanged, in the
same order: the chunk is walked in its order and cut into runs of the common case, so
invoice numbers, ids and events come out exactly as the per-subscription path makes them.

The invoices are composed by the same code (``compose.build`` with sources loaded once per
chunk), rated by the same pure functions, posted by the same ledger rules; the billing key
stays unique in the database (a conflicting invoice is not written, as
``issue_for_subscription`` writes none). Both paths finalize an invoice in the chunk that
issues it when its ``finalize_at`` is at or before the run's ``as_of`` (at the billing point
if it is due by then, else at ``as_of``), from the lines just composed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from psycopg.types.json import Jsonb
from sqlalchemy import Row, Table, or_, select, true, tuple_, update
from sqlalchemy.orm import Session

from kassa.catalog import plans
from kassa.catalog.models import Coupon, Meter, Plan, PlanVersion
from kassa.core.clock import Clock
from kassa.core.ids import new_ids
from kassa.customers.models import Customer
from kassa.db import bulk, cache
from kassa.events import service as events
from kassa.invoicing import compose, service
from kassa.invoicing.models import Invoice, InvoiceLine
from kassa.ledger import postings
from kassa.ledger import service as ledger
from kassa.metering import service as metering
from kassa.orgs import service as orgs
from kassa.orgs.models import Organization
from kassa.pricing import PlanPricing, Usage
from kassa.subscriptions import engine, support
from kassa.subscriptions.models import Adjustment, Subscription
from kassa.tax import rules as tax

Event = tuple[str, dict[str, Any], datetime]  # (type, data, occurred_at)

_CUSTOMER_COLUMNS = (
    Customer.id, Customer.name, Customer.external_id, Customer.email, Customer.address,
    Customer.tax_id, Customer.tax_kind, Customer.tax_exempt, Customer.timezone, Customer.locale,
    Customer.buyer_reference,  # (the buyer block of a finalized invoice: service.buyer_of)
)  # fmt: skip
_SUB_COLUMNS = [getattr(Subscription, a) for a in Subscription.__mapper__.column_attrs.keys()]
_INVOICE_COLUMNS = (
    "id", "customer_id", "subscription_id", "billing_key", "status", "currency",
    "period_start", "period_end", "plan_id", "plan_version", "quantity", "coupon_id",
    "tax_category", "tax_rate", "subtotal", "discount", "tax_total", "total", "credit_applied",
    "amount_paid", "amount_credited", "amount_written_off", "amount_refunded", "amount_due",
    "tax", "notes", "locale", "payment_terms_days", "issued_at", "finalize_at", "metadata",
)  # fmt: skip
_LINE_COLUMNS = (
    "id", "invoice_id", "position", "kind", "description", "quantity", "unit_amount",
    "amount", "meter_id", "period_start", "period_end", "event_ids", "adjustment_id",
    "revenue_account",
)  # fmt: skip
_FINAL_COLUMNS = (
    "sequence", "number", "status", "finalized_at", "due_at", "buyer", "locale", "paid_at",
)  # fmt: skip
_ROLL_COLUMNS = (
    "plan_id", "plan_version", "quantity", "pending_plan_id", "pending_plan_version",
    "pending_quantity", "current_period_start", "current_period_end", "next_action_at",
    "coupon_periods_used",
)  # fmt: skip


@dataclass(slots=True)
class SubState:
    """A plain copy of a subscriptions row (read by ``compose.build``, rolled here)."""

    org_id: str
    id: str
    customer_id: str
    plan_id: str
    plan_version: int
    status: str
    quantity: int
    coupon_id: str | None
    coupon_periods_used: int
    start_at: datetime
    billing_anchor: datetime
    trial_start: datetime | None
    trial_end: datetime | None
    trial_will_end_sent: bool
    current_period_start: datetime
    current_period_end: datetime
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    paused_at: datetime | None
    pending_plan_id: str | None
    pending_plan_version: int | None
    pending_quantity: int | None
    next_action_at: datetime | None
    metadata_: dict[str, str]
    entitlement_overrides: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    billing_error: dict[str, Any] | None
    billing_retry_at: datetime | None


# SubState takes a row of _SUB_COLUMNS positionally
assert [f.name for f in fields(SubState)] == [c.key for c in _SUB_COLUMNS]


@dataclass
class Final:
    """What finalizing an invoice needs of it (and of its lines, in position order)."""

    id: str
    customer_id: str
    subscription_id: str | None
    currency: str
    total: int
    amount_due: int
    tax: list[dict[str, Any]]
    locale: str
    payment_terms_days: int
    sales: list[postings.SaleLine]


@dataclass
class Chunk:
    """What a chunk's invoices are composed from, loaded once: plans, pricing, meters,
    customers, coupons, pending adjustments, usage per period, tax decisions."""

    session: Session
    org: Organization
    customers: dict[str, Row[Any]]
    meters: dict[str, Meter]
    credit: set[str]  # customers with unused credit (in any currency)
    coupons: dict[str, Coupon] = field(default_factory=dict)
    adjustments: dict[str, list[Adjustment]] = field(default_factory=dict)
    usage: dict[tuple[datetime, datetime], dict[tuple[str, str], Decimal]] = field(
        default_factory=dict
    )
    _plans: dict[tuple[str, int | None], tuple[Plan, PlanVersion]] = field(default_factory=dict)
    _pricing: dict[tuple[str, int], PlanPricing] = field(default_factory=dict)
    _rollups: dict[tuple[str, int], bool] = field(default_factory=dict)
    _decisions: dict[tuple[Any, ...], tax.TaxDecision] = field(default_factory=dict)
    _lateness: dict[tuple[str, int], timedelta] = field(default_factory=dict)
    rolled: dict[str, Rolled] = field(default_factory=dict)  # see _rolled

    @classmethod
    def load(cls, session: Session, org_id: str, customer_ids: Sequence[str]) -> Chunk:
        ids = list(set(customer_ids))
        customers = {
            row.id: row
            for row in session.connection().execute(  # plain rows: see due_subscriptions
                select(*_CUSTOMER_COLUMNS).where(
                    Customer.org_id == org_id, bulk.among(Customer.id, ids)
                )
            )
        }
        meters = {m.id: m for m in session.scalars(select(Meter).where(Meter.org_id == org_id))}
        credit = {c for c, _ in ledger.customer_credits(session, org_id, ids)}
        return cls(session, orgs.load(session, org_id), customers, meters, credit)

    def load_plans(self, versions: set[tuple[str, int]]) -> None:
        """Load the plans and plan versions of ``versions`` at once (``plan`` would ask
        for each on its own: two queries per plan and chunk)."""
        if not versions:
            return
        cache.load(self.session, select(Plan).where(
            Plan.org_id == self.org.id, bulk.among(Plan.id, {p for p, _ in versions})
        ))  # fmt: skip
        cache.load(self.session, select(PlanVersion).where(
            PlanVersion.org_id == self.org.id,
            tuple_(PlanVersion.plan_id, PlanVersion.version).in_(sorted(versions)),
        ))  # fmt: skip

    def plan(self, plan_id: str, version: int | None) -> tuple[Plan, PlanVersion]:
        found = self._plans.get((plan_id, version))
        if found is None:
            plan = plans.resolve(self.session, self.org.id, plan_id)
            found = plan, plans.version_of(self.session, plan, version)
            self._plans[(plan_id, version)] = found
        return found

    def pricing(self, plan: Plan, version: PlanVersion) -> PlanPricing:
        key = (plan.id, version.version)
        if key not in self._pricing:
            self._pricing[key] = plans.pricing(self.session, plan, version)
        return self._pricing[key]

    def tz(self, customer_id: str) -> str:
        return self.customers[customer_id].timezone or self.org.timezone

    def rollups_answer(self, plan: Plan, version: PlanVersion) -> bool:
        """Whether the chunk's usage query can rate every charge of ``version``."""
        key = (plan.id, version.version)
        if key not in self._rollups:
            self._rollups[key] = all(
                self.meters[c.meter].aggregation in metering.BULK_AGGREGATIONS
                and not getattr(c.properties, "per_event", False)
                for c in self.pricing(plan, version).charges
            )
        return self._rollups[key]

    def load_usage(
        self, wanted: Iterator[tuple[str, Plan, PlanVersion, datetime, datetime]]
    ) -> None:
        """One set of queries per distinct period, for (customer, plan version, period)
        triples: each customer's usage of its own plan's meters."""
        groups: dict[tuple[datetime, datetime], set[tuple[str, str]]] = {}
        for customer_id, plan, version, start, end in wanted:
            groups.setdefault((start, end), set()).update(
                (customer_id, c.meter) for c in self.pricing(plan, version).charges
            )
        for (start, end), pairs in groups.items():
            meters = sorted({m for _, m in pairs})
            self.usage[(start, end)] = metering.period_values(
                self.session, self.org.id, sorted({c for c, _ in pairs}),
                [(m, self.meters[m].aggregation) for m in meters], start, end, wanted=pairs,
            )  # fmt: skip

    def usage_of(
        self, customer_id: str, plan: Plan, version: PlanVersion, start: datetime, end: datetime
    ) -> dict[str, Usage]:
        found = self.usage[(start, end)]
        return {
            c.meter: Usage(found[(customer_id, c.meter)])
            for c in self.pricing(plan, version).charges
        }

    def decision(self, customer_id: str, on: datetime) -> tax.TaxDecision:
        """The tax decision for the customer on ``on``, made once per kind of buyer (a
        chunk's customers mostly share country, kind and time zone)."""
        c = self.customers[customer_id]
        tz = c.timezone or self.org.timezone
        # what ``compose.tax_party`` reads of the customer (no party built for a known key)
        key = ((c.address or {}).get("country"), c.tax_kind, c.tax_id, c.tax_exempt, tz, on)
        found = self._decisions.get(key)
        if found is None:
            party = compose.tax_party(c.address, c.tax_kind, c.tax_id, c.tax_exempt)
            found = self._decisions[key] = compose.decide(self.org, party, tz, on)
        return found

    def sources(self, sub: SubState) -> compose.Sources:
        def usage(start: datetime, end: datetime) -> Mapping[str, Usage]:
            return self.usage_of(sub.customer_id, *self.plan(sub.plan_id, sub.plan_version),
                                 start, end)  # fmt: skip

        return compose.Sources(
            plan=self.plan, pricing=self.pricing, usage=usage,
            adjustments=lambda: self.adjustments.get(sub.id, []),
            coupon=lambda ref: self.coupons[ref],
            decision=lambda on: self.decision(sub.customer_id, on),
        )  # fmt: skip

    def lateness(self, version: PlanVersion) -> timedelta:
        """``service._lateness``: the longest lateness of the version's meters (once per
        version and chunk)."""
        key = (version.plan_id, version.version)
        found = self._lateness.get(key)
        if found is None:
            seconds = [self.meters[c["meter"]].lateness_seconds for c in version.charges]
            found = self._lateness[key] = timedelta(seconds=max(seconds, default=0))
        return found


# --- subscriptions -----------------------------------------------------------------------


def after_key(columns: tuple[Any, Any], after: tuple[datetime, str] | None) -> Any:
    """``(time, id) > after`` (true without one): the due rows past the last one a run
    took, an index condition on the due-order indexes (migration 0009)."""
    if after is None:
        return true()
    return tuple_(*columns) > tuple_(*after)


def retry_due(now: datetime) -> Any:
    """Not waiting out the backoff of a recorded billing error (``billing_retry_at``)."""
    return or_(Subscription.billing_retry_at.is_(None), Subscription.billing_retry_at <= now)


def due_subscriptions(
    session: Session, org_id: str, as_of: datetime, limit: int, not_on_test_clock: Any,
    after: tuple[datetime, str] | None = None, *, now: datetime | None = None,
    only: str | None = None,
) -> list[SubState]:  # fmt: skip
    """A locked chunk of due subscriptions, in due order, past ``after`` (billing's cursor),
    but those waiting out a billing error's backoff at ``now`` (default ``as_of``); ``only``:
    just that one (a failed chunk retried one subscription at a time). Columns, not
    entities, executed on the connection: plain rows, without the ORM's loading layer (a
    sixth of the time a chunk's thousand rows took)."""
    rows = session.connection().execute(
        select(*_SUB_COLUMNS)
        .where(
            Subscription.org_id == org_id,
            Subscription.next_action_at <= as_of,
            after_key((Subscription.next_action_at, Subscription.id), after),
            not_on_test_clock,
            retry_due(now or as_of),
            Subscription.id == only if only is not None else true(),
        )
        .order_by(Subscription.next_action_at, Subscription.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [SubState(*row) for row in rows]


def bill_chunk(session: Session, subs: Sequence[SubState], as_of: datetime, clock: Clock) -> int:
    """Run every transition due at ``as_of`` of a locked chunk; returns how many."""
    if not subs:
        return 0
    org_id = subs[0].org_id
    chunk = Chunk.load(session, org_id, [s.customer_id for s in subs])
    chunk.load_plans({(s.plan_id, s.plan_version) for s in subs})
    per_customer = Counter(s.customer_id for s in subs)
    bulk_ok = {s.id for s in subs if _plain_period_end(chunk, s, as_of, per_customer)}
    _preload(chunk, [s for s in subs if s.id in bulk_ok])
    others = [s.id for s in subs if s.id not in bulk_ok]
    fallback = {
        s.id: s
        for s in session.scalars(
            select(Subscription).where(
                Subscription.org_id == org_id, bulk.among(Subscription.id, others)
            )
        )
    } if others else {}  # fmt: skip
    transitions = 0
    for run, ids in _runs([s.id for s in subs], bulk_ok):
        if run:
            _bill_plain(chunk, [s for s in subs if s.id in ids], as_of, clock)
            transitions += len(ids)
        else:
            for sub_id in [s.id for s in subs if s.id in ids]:
                transitions += engine.advance(
                    session, fallback[sub_id], as_of, clock, finalize_by=as_of
                )
    return transitions


def _runs(ids: Sequence[str], ok: set[str]) -> Iterator[tuple[bool, set[str]]]:
    """The ids in order, cut into maximal runs of the same kind: (in ``ok``, run)."""
    current: list[str] = []
    kind = False
    for i in ids:
        if current and (i in ok) != kind:
            yield kind, set(current)
            current = []
        kind = i in ok
        current.append(i)
    if current:
        yield kind, set(current)


def _plain_period_end(
    chunk: Chunk, sub: SubState, as_of: datetime, per_customer: Counter[str]
) -> bool:
    """The common case (see the module's docstring)."""
    if (
        sub.status != "active" or sub.cancel_at_period_end
        or sub.next_action_at != sub.current_period_end
        or per_customer[sub.customer_id] > 1 or sub.customer_id in chunk.credit
        or sub.customer_id not in chunk.customers
    ):  # fmt: skip
        return False
    plan, version = chunk.plan(sub.plan_id, sub.plan_version)
    if not chunk.rollups_answer(plan, version):
        return False
    _, (_, end) = _rolled(chunk, sub)
    return end > as_of  # one period behind at most: the engine catches up the others


Rolled = tuple[tuple[str, int, int], tuple[datetime, datetime]]


def _rolled(chunk: Chunk, sub: SubState) -> Rolled:
    """``engine._roll``: the plan, version and quantity of the next period, and the period
    (of the subscription as it was loaded: worked out once, asked twice)."""
    found = chunk.rolled.get(sub.id)
    if found is None:
        plan_id = sub.pending_plan_id if sub.pending_plan_id is not None else sub.plan_id
        version = (
            sub.pending_plan_version if sub.pending_plan_version is not None
            else sub.plan_version
        )  # fmt: skip
        quantity = sub.pending_quantity if sub.pending_quantity is not None else sub.quantity
        plan, _ = chunk.plan(plan_id, version)
        period = support.first_period(
            sub.current_period_end, sub.billing_anchor, support.interval_of(plan),
            chunk.tz(sub.customer_id),
        )  # fmt: skip
        found = chunk.rolled[sub.id] = (plan_id, version, quantity), period
    return found


def _preload(chunk: Chunk, subs: Sequence[SubState]) -> None:
    session, org_id = chunk.session, chunk.org.id
    coupon_ids = {s.coupon_id for s in subs if s.coupon_id}
    if coupon_ids:
        chunk.coupons = {
            c.id: c
            for c in session.scalars(
                select(Coupon).where(Coupon.org_id == org_id, bulk.among(Coupon.id, coupon_ids))
            )
        }
    if subs:
        for adj in session.scalars(
            select(Adjustment)
            .where(
                Adjustment.org_id == org_id,
                bulk.among(Adjustment.subscription_id, [s.id for s in subs]),
                Adjustment.invoiced_at.is_(None),
            )
            .order_by(Adjustment.id)
        ):
            chunk.adjustments.setdefault(adj.subscription_id, []).append(adj)
    chunk.load_usage(
        (s.customer_id, *chunk.plan(s.plan_id, s.plan_version), s.current_period_start,
         s.current_period_end)
        for s in subs
    )  # fmt: skip


@dataclass
class _Issued:
    sub: SubState
    parts: compose.Parts
    invoice_id: str
    finalize_at: datetime
    final_at: datetime | None  # finalized at issue, at this time (else a draft)


def _bill_plain(chunk: Chunk, subs: Sequence[SubState], as_of: datetime, clock: Clock) -> None:
    """``engine.step`` for a run of plain period ends: bill (``issue_for_subscription``,
    finalizing by ``as_of``), then roll over, for all of them at once.

    An invoice finalized at issue is inserted final (migration 0010). The roll-over is
    written first and the invoices, lines and events are encoded meanwhile
    (``bulk.stage``); then the numbers are taken, the ledger posted and those rows inserted,
    numbered by the statements themselves: the org's number counter stays locked from
    there to the commit only, so concurrent workers overlap the rest."""
    session, org = chunk.session, chunk.org
    now = clock.now()
    composed = [(s, compose.build(s, "period_end", chunk.tz(s.customer_id), chunk.sources(s)))
                for s in subs]  # fmt: skip
    billed = [(s, parts) for s, parts in composed if parts.lines]
    keys = {s.id: f"{s.id}@{parts.issued_at.isoformat()}" for s, parts in billed}
    taken = set(
        session.scalars(
            select(Invoice.billing_key).where(
                Invoice.org_id == org.id, bulk.among(Invoice.billing_key, keys.values())
            )
        )
    )  # billed already (nothing else to do: ``issue_for_subscription`` writes none)
    billed = [(s, parts) for s, parts in billed if keys[s.id] not in taken]
    grace = timedelta(seconds=org.invoice_grace_seconds)
    issued = []
    for (s, parts), invoice_id in zip(billed, new_ids("inv", len(billed)), strict=True):
        finalize_at = max(parts.issued_at + grace, parts.period[1] + chunk.lateness(parts.version))
        # finalized at issue, from the lines just composed: at the period end if the grace
        # and the meters' lateness are over by then, else at as_of if they are by then (the
        # run's second pass would finalize it at as_of, re-reading what this one just read)
        final_at = None
        if finalize_at <= as_of:
            end = s.current_period_end
            final_at = end if finalize_at <= end else as_of
        issued.append(_Issued(s, parts, invoice_id, finalize_at, final_at))
    seller = service.seller_of(org)
    rows: list[tuple[Any, ...]] = []
    txs: list[ledger.NewTransaction] = []
    # events with the place of the invoice they number among those finalized (or None)
    invoice_events: dict[str, list[tuple[str, dict[str, Any], datetime, int | None]]] = {}
    for item in issued:
        s, parts = item.sub, item.parts
        row = _draft_row(chunk, s, parts, item.invoice_id, keys[s.id], item.finalize_at)
        happened: list[tuple[str, dict[str, Any], datetime, int | None]] = [
            ("invoice.created", _draft_event(row), s.current_period_end, None)
        ]
        if item.final_at is not None:
            final = _final_of(item.invoice_id, parts.lines, row)
            values, tx, finalized = _finalization(chunk, final, item.final_at, None, seller)
            del values["seller"]  # (bound once, as the other columns the rows share)
            row.update(values, sequence=len(txs) + 1)  # the statement adds the counter's base
            txs.append(tx)
            happened += [(kind, data, at, row["sequence"]) for kind, data, at in finalized]
        invoice_events[s.id] = happened
        assert len(row) == len(_ISSUE_COLUMNS)  # (its keys: _ISSUE_COLUMNS, in their order)
        rows.append(tuple(row.values()))
    coupon_used = {i.sub.id for i in issued if i.parts.coupon_used}
    invoiced_at = {a: i.sub.current_period_end for i in issued for a in i.parts.adjustment_ids}
    for adj_list in chunk.adjustments.values():
        for adj in adj_list:
            if adj.id in invoiced_at:
                adj.invoiced_at = invoiced_at[adj.id]
    event_rows: list[tuple[str, dict[str, Any], datetime, int | None]] = []
    rolls = []
    cleared: list[str] = []
    for s in subs:
        event_rows += invoice_events.get(s.id, [])
        (plan_id, version, quantity), period = _rolled(chunk, s)
        at = s.current_period_end
        s.plan_id, s.plan_version, s.quantity = plan_id, version, quantity
        s.pending_plan_id = s.pending_plan_version = s.pending_quantity = None
        s.current_period_start, s.current_period_end = period
        s.next_action_at = period[1]
        s.coupon_periods_used += s.id in coupon_used
        s.updated_at = now
        if s.billing_error is not None:  # billed again: the recorded error is over
            cleared.append(s.id)
            s.billing_error = s.billing_retry_at = None
        event_rows.append(("subscription.updated", _sub_event(chunk, s), at, None))
        rolls.append((s.id, *(getattr(s, c) for c in _ROLL_COLUMNS)))
    session.flush()
    changed = bulk.update(
        session, Subscription.__table__, ("org_id", "id"), (*_ROLL_COLUMNS, "updated_at"),  # type: ignore[arg-type]
        rolls, consts={"org_id": org.id, "updated_at": now},
    )  # fmt: skip
    assert changed == len(rolls), (changed, len(rolls))
    if cleared:
        session.execute(
            update(Subscription)
            .where(Subscription.org_id == org.id, Subscription.id.in_(cleared))
            .values(billing_error=None, billing_retry_at=None)
        )
    staged_invoices = bulk.stage(
        _INVOICES, _ISSUE_COLUMNS, rows,
        consts={"org_id": org.id, "created_at": now, "updated_at": now, "seller": seller},
    )  # fmt: skip
    staged_lines = _stage_lines(org.id, [(i.invoice_id, i.parts.lines) for i in issued])
    staged_events = events.stage(clock, org.id, event_rows, [("sequence", "bigint")])
    # the counter's lock is held from here to the commit; the ledger comes after it, as in
    # ``service.finalize``: its accounts may be new rows another chunk creates too, and a
    # transaction that waited for one while a transaction that held the counter waited for
    # it would deadlock (the number first, everywhere, keeps one order of locks; "the ledger
    # first" cannot: a transaction that finalizes several invoices — a subscription catching
    # up, a chunk mixing both paths — posts again after its first number; tried, and the
    # two-process test deadlocked)
    params = {"prefix": org.invoice_prefix, "base": 0}
    if txs:
        params["base"] = service.next_numbers(session, org.id, "invoice", len(txs)) - 1
        ledger.post_many(session, org.id, txs, clock, new=True)
    # (a billing key taken since the check above, by a path that skipped the row lock,
    # fails the statement and the chunk: the next run finds it taken)
    if rows:
        bulk.insert_staged(session, staged_invoices, exprs=_NUMBERED, params=params)
        bulk.insert_staged(session, staged_lines)
    bulk.insert_staged(session, staged_events, exprs=_NUMBERED_EVENT, params=params)
    session.info["invoices_issued"] = session.info.get("invoices_issued", 0) + len(rows)
    session.info["invoices_finalized"] = session.info.get("invoices_finalized", 0) + len(txs)


_INVOICES = cast(Table, Invoice.__table__)
_LINES = cast(Table, InvoiceLine.__table__)
_ISSUE_COLUMNS = (
    *_INVOICE_COLUMNS, "sequence", "number", "finalized_at", "due_at", "buyer", "paid_at",
)  # fmt: skip
# staged: ``sequence`` is the invoice's place among those finalized (1, 2, …), ``number``
# empty; inserted: numbered from the counter's value before them (``base``)
_NUMBERED = {
    "sequence": "s.sequence + :base",
    "number": "kassa_document_number(:prefix, s.sequence + :base)",
    "seller": "CASE WHEN s.sequence IS NULL THEN NULL ELSE s.seller END",  # (a draft: none)
}
_NUMBERED_EVENT = {
    "data": "CASE WHEN s.sequence IS NULL THEN s.data ELSE jsonb_set(s.data, '{number}',"
    " to_jsonb(kassa_document_number(:prefix, s.sequence + :base))) END",
}


def _draft_row(
    chunk: Chunk, s: SubState, parts: compose.Parts, invoice_id: str, key: str,
    finalize_at: datetime,
) -> dict[str, Any]:  # fmt: skip
    """``service._insert_draft`` with ``_totals`` applied: the invoice row as written (but
    the columns a chunk's rows share: ``_bill_plain`` binds them once)."""
    decision = parts.decision
    rows = compose.tax_rows(decision, parts.lines)
    subtotal = sum(line.amount for line in parts.lines if line.kind != "discount")
    discount = -sum(line.amount for line in parts.lines if line.kind == "discount")
    tax_total = sum(r.amount for r in rows)
    total = subtotal - discount + tax_total
    customer = chunk.customers[s.customer_id]
    return dict(
        zip(_ISSUE_COLUMNS, (
            invoice_id, s.customer_id, s.id, key, "draft", parts.currency,
            parts.period[0], parts.period[1], parts.plan.id, parts.version.version,
            parts.quantity, parts.coupon.id if parts.coupon_used and parts.coupon else None,
            decision.category, decision.rate, subtotal, discount, tax_total, total, 0, 0, 0, 0,
            0, max(total, 0),
            [{"category": r.category, "rate": str(r.rate), "taxable_amount": r.taxable_amount,
              "amount": r.amount} for r in rows],
            [decision.note] if decision.note else [], customer.locale or "en",
            chunk.org.payment_terms_days, parts.issued_at, finalize_at, {},
            None, None, None, None, None, None,
        ), strict=True)
    )  # fmt: skip


def _draft_event(row: Mapping[str, Any]) -> dict[str, Any]:
    return service.event_data(
        row["id"], None, row["customer_id"], row["subscription_id"], "draft", row["currency"],
        row["total"], row["amount_due"],
    )  # fmt: skip


def _final_of(invoice_id: str, lines: Sequence[compose.Line], row: Mapping[Any, Any]) -> Final:
    return Final(
        invoice_id, row["customer_id"], row["subscription_id"], row["currency"], row["total"],
        row["amount_due"], row["tax"], row["locale"], row["payment_terms_days"],
        _sales((line.account, line.amount) for line in lines),
    )  # fmt: skip


def _sales(lines: Iterable[tuple[str, int]]) -> list[postings.SaleLine]:
    """One sale per revenue account, its lines' net amounts summed (the ledger nets an
    invoice's postings per account: ``postings.entries``; an invoice's lines mostly share
    one account)."""
    net: dict[str, int] = {}
    for account, amount in lines:
        net[account] = net.get(account, 0) + amount
    return [postings.SaleLine(account, amount) for account, amount in net.items()]


def _sub_event(chunk: Chunk, s: SubState) -> dict[str, Any]:
    """``support.emit``'s snapshot (``snapshot`` reads only plain attributes)."""
    plan, _ = chunk.plan(s.plan_id, s.plan_version)
    return support.snapshot(cast(Subscription, s), plan)


def _stage_lines(
    org_id: str, invoices: Sequence[tuple[str, Sequence[compose.Line]]]
) -> bulk.Staged:
    """``service._write_lines`` for many invoices, staged for one statement."""
    count = sum(len(lines) for _, lines in invoices)
    ids = iter(new_ids("il", count))
    return bulk.stage(
        _LINES, _LINE_COLUMNS,
        [
            (next(ids), invoice_id, position, line.kind, line.description[:500],
             line.quantity, line.unit_amount, line.amount, line.meter, line.period_start,
             line.period_end, Jsonb(line.event_ids), line.adjustment_id, line.account)
            for invoice_id, lines in invoices
            for position, line in enumerate(lines, start=1)
        ],
        consts={"org_id": org_id},
    )  # fmt: skip


# --- finalizing --------------------------------------------------------------------------


def _finalization(
    chunk: Chunk, inv: Final, at: datetime, number: str | None, seller: dict[str, Any]
) -> tuple[dict[str, Any], ledger.NewTransaction, list[Event]]:
    """``service.finalize`` of one invoice known to need no re-rating and whose customer
    has no credit to apply, at ``at``: the invoice's new column values (but its number),
    its ledger transaction and its events (``number`` in their data)."""
    customer = chunk.customers[inv.customer_id]
    paid = inv.amount_due == 0
    values = {
        "status": "paid" if paid else "open", "finalized_at": at,
        "due_at": at + timedelta(days=inv.payment_terms_days), "seller": seller,
        "buyer": service.buyer_of(customer), "locale": customer.locale or inv.locale,
        "paid_at": at if paid else None,
    }  # fmt: skip
    tx = ledger.NewTransaction(
        kind="invoice_finalized", source_type="invoice", source_id=inv.id,
        key=f"invoice_finalized:{inv.id}", currency=inv.currency, occurred_at=at,
        postings=postings.invoice_finalized(
            inv.customer_id, inv.id, inv.sales,
            [postings.TaxAmount(t["category"], Decimal(t["rate"]), t["amount"]) for t in inv.tax],
        ),
        customer_id=inv.customer_id,
    )  # fmt: skip

    def data(status: str, due: int) -> dict[str, Any]:
        return service.event_data(
            inv.id, number, inv.customer_id, inv.subscription_id, status, inv.currency,
            inv.total, due,
        )  # fmt: skip

    happened = [("invoice.finalized", data("open", inv.amount_due), at)]
    if paid:
        happened.append(("invoice.paid", data("paid", 0), at))
    return values, tx, happened


def _finalize(
    chunk: Chunk, invoices: Sequence[tuple[Final, datetime]], clock: Clock
) -> dict[str, list[Event]]:
    """``_finalization`` of drafts written earlier, numbered in the order given; returns
    each invoice's events."""
    if not invoices:
        return {}
    session, org = chunk.session, chunk.org
    first = service.next_numbers(session, org.id, "invoice", len(invoices))
    seller = service.seller_of(org)
    rows = []
    txs = []
    out: dict[str, list[Event]] = {}
    for n, (inv, at) in enumerate(invoices):
        sequence = first + n
        number = service.document_number(org.invoice_prefix, sequence)
        values, tx, out[inv.id] = _finalization(chunk, inv, at, number, seller)
        values.update(sequence=sequence, number=number)
        rows.append((inv.id, *(values[c] for c in _FINAL_COLUMNS)))
        txs.append(tx)
    changed = bulk.update(
        session, _INVOICES, ("org_id", "id"), (*_FINAL_COLUMNS, "seller", "updated_at"), rows,
        where="t.status = 'draft'",
        consts={"org_id": org.id, "seller": seller, "updated_at": clock.now()},
    )  # fmt: skip
    assert changed == len(rows), (changed, len(rows))
    ledger.post_many(session, org.id, txs, clock, new=True)
    session.info["invoices_finalized"] = session.info.get("invoices_finalized", 0) + len(rows)
    return out


_DRAFT_COLUMNS = (
    Invoice.id, Invoice.customer_id, Invoice.subscription_id, Invoice.currency, Invoice.plan_id,
    Invoice.plan_version, Invoice.period_start, Invoice.period_end, Invoice.total,
    Invoice.amount_due, Invoice.tax, Invoice.locale, Invoice.payment_terms_days,
)  # fmt: skip
_LINE_READ = (
    InvoiceLine.invoice_id, InvoiceLine.kind, InvoiceLine.description, InvoiceLine.quantity,
    InvoiceLine.amount, InvoiceLine.meter_id, InvoiceLine.adjustment_id,
    InvoiceLine.revenue_account,
)  # fmt: skip


def finalize_drafts(
    session: Session, org_id: str, as_of: datetime, limit: int, not_on_test_clock: Any,
    clock: Clock, after: tuple[datetime, str] | None = None, *, only: str | None = None,
) -> tuple[int, tuple[datetime, str] | None]:  # fmt: skip
    """Finalize a locked chunk of due drafts past ``after`` (``service.finalize`` for each,
    in order); returns how many drafts the chunk had and the last one's (due time, id).
    ``only``: just that draft (a failed chunk retried one draft at a time)."""
    drafts = session.execute(
        select(*_DRAFT_COLUMNS, Invoice.finalize_at)
        .where(
            Invoice.org_id == org_id, Invoice.status == "draft", Invoice.finalize_at <= as_of,
            after_key((Invoice.finalize_at, Invoice.id), after), not_on_test_clock,
            Invoice.id == only if only is not None else true(),
        )
        .order_by(Invoice.finalize_at, Invoice.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()  # fmt: skip
    if not drafts:
        return 0, None
    last = (drafts[-1].finalize_at, drafts[-1].id)
    lines: dict[str, list[Any]] = {}
    for line in session.execute(
        select(*_LINE_READ)
        .where(
            InvoiceLine.org_id == org_id, bulk.among(InvoiceLine.invoice_id, [d.id for d in drafts])
        )
        .order_by(InvoiceLine.invoice_id, InvoiceLine.position)
    ):
        lines.setdefault(line.invoice_id, []).append(line)
    chunk = Chunk.load(session, org_id, [d.customer_id for d in drafts])
    per_customer = Counter(d.customer_id for d in drafts)
    rerate = [d for d in drafts if _usage_lines(lines.get(d.id, [])) and d.plan_id is not None
              and d.period_start is not None and d.period_end is not None]  # fmt: skip
    rateable = [d for d in rerate if chunk.rollups_answer(*chunk.plan(d.plan_id, d.plan_version))]
    chunk.load_usage(
        (d.customer_id, *chunk.plan(d.plan_id, d.plan_version), d.period_start, d.period_end)
        for d in rateable
    )  # fmt: skip
    rateable_ids = {d.id for d in rateable}
    rerate_ids = {d.id for d in rerate}

    def as_is(d: Row[Any]) -> bool:
        """Finalizing would not re-rate it and no credit applies: the set-based path."""
        if per_customer[d.customer_id] > 1 or d.customer_id in chunk.credit:
            return False
        if d.customer_id not in chunk.customers:
            return False
        if d.id not in rerate_ids:
            return True
        return d.id in rateable_ids and _unchanged(chunk, d, lines[d.id])

    ok = {d.id for d in drafts if as_is(d)}
    by_id = {d.id: d for d in drafts}
    for run, ids in _runs([d.id for d in drafts], ok):
        ordered = [d for d in drafts if d.id in ids]
        if run:
            items = [(_final_of(d.id, [], d._mapping), as_of) for d in ordered]
            for final, _ in items:
                final.sales = _sales(
                    (line.revenue_account, line.amount) for line in lines.get(final.id, [])
                )
            events.record_many(
                session, clock, org_id,
                [e for evs in _finalize(chunk, items, clock).values() for e in evs],
            )  # fmt: skip
        else:
            for d in ordered:
                invoice = service.load(session, org_id, by_id[d.id].id)
                service.finalize(session, invoice, as_of, clock)
    return len(drafts), last


def _usage_lines(lines: Sequence[Row[Any]]) -> list[Row[Any]]:
    return [line for line in lines if line.kind == "usage" and line.adjustment_id is None]


def _unchanged(chunk: Chunk, d: Row[Any], lines: Sequence[Row[Any]]) -> bool:
    """Whether ``service.refresh_usage`` would keep the draft's usage lines: each is its
    charge's (description, units) as the usage stands now (amounts follow from units)."""
    plan, version = chunk.plan(d.plan_id, d.plan_version)
    charges = chunk.pricing(plan, version).charges
    old = _usage_lines(lines)
    if len(old) != len(charges):
        return False
    usage = chunk.usage_of(d.customer_id, plan, version, d.period_start, d.period_end)
    return all(
        line.meter_id == c.meter
        and line.description == (c.name or c.meter)
        and line.quantity == max(usage[c.meter].units, Decimal(0))
        for line, c in zip(old, charges, strict=True)
    )
