"""Billing runs: bill every subscription whose billing point has passed, then finalize the
drafts whose grace (and the meters' lateness) is over. An invoice whose grace and lateness
are over at the run's ``as_of`` when it is issued is finalized at once, in the chunk that
issues it (at ``as_of``, from the lines just composed); the second pass finalizes the drafts
issued earlier.

Crash-safe by construction: work is found by asking the database what is due, each chunk
of subscriptions (locked ``FOR UPDATE SKIP LOCKED``, so any number of workers share the
work) is one transaction that issues its invoices and moves the subscriptions on together,
and an invoice's billing key is unique. Killed at any moment, a run loses at most its open
chunk, which the next run redoes; no period is billed twice or skipped.

A run walks the due rows in their index order and asks for each chunk *after* the last row
it took (a keyset cursor): rows it billed leave dead index entries behind until vacuum, and
starting every chunk from the top would step over all of them (a run's cost would grow with
the square of its size). A row another worker held locked when the cursor passed it is
that worker's; if that worker dies instead, the row is due still and the next run bills it.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from queue import Empty
from typing import Any

import structlog
from sqlalchemy import func, select, text, true
from sqlalchemy.orm import Session

from kassa.config import Settings
from kassa.core.clock import Clock
from kassa.core.errors import KassaError
from kassa.core.metrics import BILLING_FAILURES
from kassa.customers.models import Customer
from kassa.db.engine import Database
from kassa.invoicing import bulk, service
from kassa.invoicing.models import Invoice
from kassa.orgs import service as orgs
from kassa.subscriptions import engine
from kassa.subscriptions import service as subscriptions
from kassa.subscriptions.models import Subscription

log = structlog.get_logger("kassa.billing")
CHUNK = 1000  # subscriptions (or drafts) per transaction

Progress = Callable[[str, int], None]  # (phase, items done in this step)
Cursor = tuple[datetime, str] | None  # the (due time, id) of the last row a chunk took
# (session, org, cursor, only this row or None) -> (rows, transitions, the last one's key)
Work = Callable[[Session, str, Cursor, str | None], tuple[int, int, Cursor]]
# (session, org, cursor, limit) -> the keys of the due rows past the cursor, in due order
Keys = Callable[[Session, str, Cursor, int], list[tuple[datetime, str]]]
# (org, the failed row's id, the error) -> recorded (a subscription's billing_error)
Failed = Callable[[str, str, BaseException], None]


@dataclass
class RunResult:
    as_of: datetime
    organizations: int = 0
    transitions: int = 0
    invoices_created: int = 0
    invoices_finalized: int = 0
    failed: int = 0  # subscriptions (or drafts) skipped and recorded: billing_error
    failed_organizations: int = 0  # organizations whose run stopped on an unexpected error


@dataclass
class Phase:
    name: str
    work: Work
    keys: Keys
    failed: Failed


def _on_test_clock(stmt_owner: type[Subscription] | type[Invoice]) -> object:
    """EXISTS: the row's customer runs on a test clock (those bill as their clock moves)."""
    return (
        select(Customer.id)
        .where(
            Customer.org_id == stmt_owner.org_id,
            Customer.id == stmt_owner.customer_id,
            Customer.test_clock_id.is_not(None),
        )
        .exists()
    )


def due_counts(db: Database, as_of: datetime, org_id: str | None = None) -> tuple[int, int]:
    """(subscriptions due, drafts due) over the orgs of the run: for progress bars."""
    subs = drafts = 0
    for org in _orgs(db, org_id):
        with db.transaction(org) as session:
            subs += session.scalar(
                select(func.count()).select_from(Subscription).where(
                    Subscription.org_id == org, Subscription.next_action_at <= as_of
                )
            ) or 0  # fmt: skip
            drafts += session.scalar(
                select(func.count()).select_from(Invoice).where(
                    Invoice.org_id == org, Invoice.status == "draft",
                    Invoice.finalize_at <= as_of,
                )
            ) or 0  # fmt: skip
    return subs, drafts


def _orgs(db: Database, org_id: str | None) -> list[str]:
    if org_id is not None:
        return [org_id]
    with db.transaction() as session:
        return orgs.ids(session)


def run(
    db: Database, clock: Clock, as_of: datetime | None = None, *, org_id: str | None = None,
    chunk: int = CHUNK, progress: Progress | None = None, set_based: bool = True,
) -> RunResult:  # fmt: skip
    """Bill everything due at ``as_of`` (default now; never later than now). ``set_based``
    takes the common case of each chunk in bulk (``bulk``); False bills every subscription
    and finalizes every draft one at a time (the reference the bulk path is tested against).
    """
    now = clock.now()
    as_of = min(as_of or now, now)
    result = RunResult(as_of)

    def bill(
        session: Session, org: str, after: Cursor, only: str | None
    ) -> tuple[int, int, Cursor]:
        """A chunk of due subscriptions: (how many, transitions, the last one's key)."""
        if set_based:
            due = bulk.due_subscriptions(
                session, org, as_of, chunk,
                ~_on_test_clock(Subscription),  # type: ignore[operator]
                after, now=now, only=only,
            )  # fmt: skip
            last = _key(due[-1].next_action_at, due[-1].id) if due else after
            return len(due), bulk.bill_chunk(session, due, as_of, clock), last
        subs = _due_subscriptions(session, org, as_of, chunk, after, now, only)
        last = _key(subs[-1].next_action_at, subs[-1].id) if subs else after
        steps = sum(engine.advance(session, s, as_of, clock, finalize_by=as_of) for s in subs)
        return len(subs), steps, last

    def finalize(
        session: Session, org: str, after: Cursor, only: str | None
    ) -> tuple[int, int, Cursor]:
        """A chunk of due drafts: (how many, 0, the last one's key)."""
        if set_based:
            count, last = bulk.finalize_drafts(
                session, org, as_of, chunk,
                ~_on_test_clock(Invoice),  # type: ignore[operator]
                clock, after, only=only,
            )  # fmt: skip
            return count, 0, last or after
        drafts = _due_drafts(session, org, as_of, chunk, after, only)
        last = _key(drafts[-1].finalize_at, drafts[-1].id) if drafts else after
        for invoice in drafts:
            service.finalize(session, invoice, as_of, clock)
        return len(drafts), 0, last

    def sub_keys(session: Session, org: str, after: Cursor, limit: int) -> list[Any]:
        return list(
            session.execute(
                select(Subscription.next_action_at, Subscription.id)
                .where(
                    Subscription.org_id == org,
                    Subscription.next_action_at <= as_of,
                    bulk.after_key((Subscription.next_action_at, Subscription.id), after),
                    ~_on_test_clock(Subscription),  # type: ignore[operator]
                    bulk.retry_due(now),
                )
                .order_by(Subscription.next_action_at, Subscription.id)
                .limit(limit)
            ).all()
        )

    def draft_keys(session: Session, org: str, after: Cursor, limit: int) -> list[Any]:
        return list(
            session.execute(
                select(Invoice.finalize_at, Invoice.id)
                .where(
                    Invoice.org_id == org,
                    Invoice.status == "draft",
                    Invoice.finalize_at <= as_of,
                    bulk.after_key((Invoice.finalize_at, Invoice.id), after),
                    ~_on_test_clock(Invoice),  # type: ignore[operator]
                )
                .order_by(Invoice.finalize_at, Invoice.id)
                .limit(limit)
            ).all()
        )

    def sub_failed(org: str, sub_id: str, exc: BaseException) -> None:
        _record(db, clock, org, sub_id, exc, "subscriptions")

    def draft_failed(org: str, invoice_id: str, exc: BaseException) -> None:
        with db.transaction(org) as session:
            sub_id = session.scalar(
                select(Invoice.subscription_id).where(
                    Invoice.org_id == org, Invoice.id == invoice_id
                )
            )
        if sub_id is not None:
            _record(db, clock, org, sub_id, exc, "invoices")
        else:
            _count_failure("invoices", exc)
            log.error("billing_failed", org_id=org, invoice=invoice_id, error=_message(exc))

    phases = (
        Phase("subscriptions", bill, sub_keys, sub_failed),
        Phase("invoices", finalize, draft_keys, draft_failed),
    )
    refresh_statistics(db)
    for org in _orgs(db, org_id):
        result.organizations += 1
        try:
            for phase in phases:
                _drain(db, org, chunk, phase, result, progress)
        except Exception as exc:  # one organization's trouble stops nobody else's billing
            result.failed_organizations += 1
            _count_failure("organization", exc)
            log.exception("billing_run_org_failed", org_id=org, error=_message(exc))
    if result.transitions or result.invoices_finalized or result.failed:
        log.info(
            "billing_run", transitions=result.transitions, created=result.invoices_created,
            finalized=result.invoices_finalized, failed=result.failed, as_of=as_of.isoformat(),
        )  # fmt: skip
    return result


def _message(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text_}"[:500] if not isinstance(exc, KassaError) else text_


def _code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, KassaError) else "internal_error"


def _count_failure(phase: str, exc: BaseException) -> None:
    BILLING_FAILURES.labels(phase, _code(exc)).inc()


def _record(
    db: Database, clock: Clock, org: str, sub_id: str, exc: BaseException, phase: str
) -> None:
    """Record a subscription's billing failure in a transaction of its own."""
    with db.transaction(org) as session:
        subscriptions.record_billing_failure(
            session, org, sub_id, _code(exc), _message(exc) or exc.__class__.__name__, clock
        )
    _count_failure(phase, exc)
    log.warning(
        "billing_failed",
        org_id=org,
        subscription=sub_id,
        phase=phase,
        code=_code(exc),
        error=_message(exc),
    )


def run_in_processes(
    settings: Settings, as_of: datetime, *, processes: int, org_id: str | None = None,
    chunk: int = CHUNK, progress: Progress | None = None,
) -> RunResult:  # fmt: skip
    """``run`` as of ``as_of`` in ``processes`` processes at once, all on the database of
    ``settings``: they share the due rows (``SKIP LOCKED``), so a billing day's backlog uses
    every core. Progress is reported here as each process's chunks commit; the result is
    the sum of theirs. A process that fails fails the whole call (what the others billed
    stays billed, and the next run finishes the rest)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [
        context.Process(target=_run_child, args=(n, settings, as_of, org_id, chunk, queue))
        for n in range(processes)
    ]
    for child in children:
        child.start()
    total = RunResult(as_of)
    reported: set[int] = set()
    while True:  # until each child has reported or died (drained meanwhile: never blocked)
        try:
            message = queue.get(timeout=1)
        except Empty:
            died = {n for n, c in enumerate(children) if c.exitcode not in (None, 0)}
            if len(reported | died) == len(children):
                break
            continue
        if message[0] == "progress":
            if progress is not None:
                progress(message[1], message[2])
            continue
        reported.add(message[1])
        total.organizations = max(total.organizations, message[2])
        total.transitions += message[3]
        total.invoices_created += message[4]
        total.invoices_finalized += message[5]
        total.failed += message[6]
        total.failed_organizations += message[7]
        if len(reported) == len(children):
            break
    for child in children:
        child.join()
    failed = [c.exitcode for c in children if c.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} of {processes} billing processes failed: {failed}")
    return total


def _run_child(
    n: int, settings: Settings, as_of: datetime, org_id: str | None, chunk: int, queue: Any
) -> None:
    from kassa.core.logging import configure_logging
    from kassa.runtime import Runtime, settle_garbage_collector

    configure_logging(settings.log_level, settings.log_format)
    rt = Runtime.build(settings)
    settle_garbage_collector()
    try:
        result = run(
            rt.db, rt.clock, as_of, org_id=org_id, chunk=chunk,
            progress=lambda phase, count: queue.put(("progress", phase, count)),
        )  # fmt: skip
        queue.put((
            "done", n, result.organizations, result.transitions, result.invoices_created,
            result.invoices_finalized, result.failed, result.failed_organizations,
        ))  # fmt: skip
    finally:
        rt.close()


def _key(due: datetime | None, row_id: str) -> Cursor:
    assert due is not None  # a due row has its due time
    return due, row_id


def _drain(
    db: Database, org: str, chunk: int, phase: Phase, result: RunResult,
    progress: Progress | None,
) -> None:  # fmt: skip
    """Run ``phase.work`` one chunk (one transaction) at a time, each after the last row the
    previous one took, until a chunk comes out short; what a chunk did is counted once it
    has committed. A chunk that fails (rolled back) is retried one row at a time, each in a
    transaction of its own (``_isolate``): the fast path stays a few statements per chunk,
    only a failing chunk pays for the slow one."""
    after: Cursor = None
    while True:
        try:
            with _no_collection(), db.transaction(org) as session:
                count, transitions, next_after = phase.work(session, org, after, None)
                issued = session.info.pop("invoices_issued", 0)
                finalized = session.info.pop("invoices_finalized", 0)
        except Exception as exc:
            log.info("billing_chunk_failed", org_id=org, phase=phase.name, error=_message(exc))
            count, next_after = _isolate(db, org, chunk, phase, after, result, progress)
        else:
            result.transitions += transitions
            result.invoices_created += issued
            result.invoices_finalized += finalized
            if progress and count:
                progress(phase.name, count)
        after = next_after
        if count < chunk:
            return


def _isolate(
    db: Database,
    org: str,
    chunk: int,
    phase: Phase,
    after: Cursor,
    result: RunResult,
    progress: Progress | None,
) -> tuple[int, Cursor]:
    """The rows of a failed chunk, one transaction each: those that bill are billed, one
    that still fails is skipped and recorded (``phase.failed``: the subscription's
    ``billing_error``, retried by later runs with backoff). Returns (rows, last key)."""
    with db.transaction(org) as session:
        keys = phase.keys(session, org, after, chunk)
    for key in keys:
        try:
            with _no_collection(), db.transaction(org) as session:
                _, transitions, _ = phase.work(session, org, None, key[1])
                issued = session.info.pop("invoices_issued", 0)
                finalized = session.info.pop("invoices_finalized", 0)
        except Exception as exc:
            phase.failed(org, key[1], exc)
            result.failed += 1
        else:
            result.transitions += transitions
            result.invoices_created += issued
            result.invoices_finalized += finalized
        if progress:
            progress(phase.name, 1)
    return len(keys), (keys[-1] if keys else after)


@contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection during a chunk: a chunk allocates hundreds of thousands
    of objects that all live until it ends, so each collection the allocations trigger
    would only walk them to find nothing (about 9 % of a run's Python time). Whatever a
    chunk leaves in cycles is collected after it, as usual. (The switch is per process:
    requests served meanwhile by the same process keep their cycles a chunk longer.)"""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def refresh_statistics(db: Database) -> int:
    """ANALYZE the tables billing runs bulk-load (invoices, lines, ledger, events) that
    have outgrown their statistics (``kassa_analyze_grown``, migration 0008): at the start
    of a run, what earlier runs loaded, for the queries planned from them (a chunk's own
    statements probe keys and do not depend on them; autovacuum catches up in between).
    Returns how many; cheap when none (one look at the statistics collector's counters)."""
    with db.transaction() as session:
        return int(session.execute(text("SELECT kassa_analyze_grown()")).scalar_one())


def _due_subscriptions(
    session: Session,
    org_id: str,
    as_of: datetime,
    limit: int,
    after: Cursor,
    now: datetime,
    only: str | None,
) -> list[Subscription]:
    return list(
        session.scalars(
            select(Subscription)
            .where(
                Subscription.org_id == org_id,
                Subscription.next_action_at <= as_of,
                bulk.after_key((Subscription.next_action_at, Subscription.id), after),
                ~_on_test_clock(Subscription),  # type: ignore[operator]
                bulk.retry_due(now),
                Subscription.id == only if only is not None else true(),
            )
            .order_by(Subscription.next_action_at, Subscription.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def _due_drafts(
    session: Session,
    org_id: str,
    as_of: datetime,
    limit: int,
    after: Cursor,
    only: str | None,
) -> list[Invoice]:
    return list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.org_id == org_id,
                Invoice.status == "draft",
                Invoice.finalize_at <= as_of,
                bulk.after_key((Invoice.finalize_at, Invoice.id), after),
                ~_on_test_clock(Invoice),  # type: ignore[operator]
                Invoice.id == only if only is not None else true(),
            )
            .order_by(Invoice.finalize_at, Invoice.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def finalize_for_test_clock(
    session: Session, org_id: str, clock_id: str, until: datetime, clock: Clock
) -> int:
    """Drafts of a test clock's customers whose time has come, in time order."""
    drafts = session.scalars(
        select(Invoice)
        .join(Customer, (Customer.org_id == Invoice.org_id) & (Customer.id == Invoice.customer_id))
        .where(
            Invoice.org_id == org_id,
            Customer.test_clock_id == clock_id,
            Invoice.status == "draft",
            Invoice.finalize_at <= until,
        )
        .order_by(Invoice.finalize_at, Invoice.id)
        .with_for_update(of=Invoice)
    ).all()
    for invoice in drafts:
        assert invoice.finalize_at is not None
        service.finalize(session, invoice, invoice.finalize_at, clock)
    return len(drafts)
