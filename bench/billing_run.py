"""One billing run over 100 000 active subscriptions vs PostgreSQL's raw COPY floor.

    .venv/bin/python bench/billing_run.py [--subscriptions 100000] [--chunk 1000] [--workers 2]
        [--events-per-meter 3]

Runs against embedded PostgreSQL (a fresh `kassa_bench_billing_<pid>` database on the test
server in `.kassa-test`, dropped at the end: concurrent runs do not disturb each other) or
KASSA_DATABASE_URL.

Setup (not timed): one organization (invoice grace 0), 5 meters (count, sum, max), 4 plans
(in advance and in arrears, 3 usage charges each: per_unit, graduated, volume, package),
the customers (UTC) and one active monthly subscription each, all started at T0 and bulk
inserted (COPY) with the columns `subscriptions.service.create` writes; then the usage of
the period (--events-per-meter events per customer and charged meter) through the real
ingest service (`metering.ingest.ingest`, 10 000 events per transaction: events + rollups).

Timed: `invoicing.billing.run` as of T0 + 1 month + the meters' lateness + 1 s (so every
period end is due and every draft's finalization too), in --workers processes at once on
the same organization (each its own Runtime, its startup objects frozen out of the garbage
collector as `kassa worker` does; 1 = in this process). Then:
  run     subscriptions billed, invoices created/finalized, seconds, invoices/s
  cpu     CPU seconds of the billing process(es) and of PostgreSQL during the run
  check   one invoice per subscription, all finalized, numbers gapless, usage units and
          amounts as the pure pricing library rates the generated events, ledger verified
  floor   COPY of the same invoice and line rows into tables of the same shape (the least
          any billing run can cost to store its invoices): the median of three COPYs, each
          into fresh tables
Targets: run ≤ 5 × floor and run < 60 s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import make_url, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import _fresh_database, make_settings  # noqa: E402

from kassa.catalog import meters as meter_service  # noqa: E402
from kassa.catalog import plans as plan_service  # noqa: E402
from kassa.catalog.schemas import ChargeIn, MeterIn, PlanIn  # noqa: E402
from kassa.core.clock import FrozenClock  # noqa: E402
from kassa.core.context import Principal, Role  # noqa: E402
from kassa.core.ids import new_ids  # noqa: E402
from kassa.core.logging import configure_logging  # noqa: E402
from kassa.db import migrate  # noqa: E402
from kassa.invoicing import billing  # noqa: E402
from kassa.ledger.verify import verify  # noqa: E402
from kassa.metering.ingest import MAX_BATCH, ingest  # noqa: E402
from kassa.orgs import service as org_service  # noqa: E402
from kassa.pricing import Usage, parse_charge, rate_charge  # noqa: E402
from kassa.runtime import Runtime, settle_garbage_collector  # noqa: E402
from kassa.subscriptions import support  # noqa: E402

DATABASE = f"kassa_bench_billing_{os.getpid()}"  # one per run: runs may overlap
T0 = datetime(2025, 1, 1, tzinfo=UTC)  # every subscription starts here (a UTC midnight)
COPY_ROWS = 20_000  # rows per COPY transaction during setup

# event_name, aggregation, value property
METERS = [
    ("api_calls", "count", None),
    ("storage_gb", "max", "gb"),
    ("bandwidth_mb", "sum", "mb"),
    ("sms", "count", None),
    ("compute_s", "sum", "seconds"),
]
TIERS = [
    {"up_to": 100, "unit_amount": "10"},
    {"up_to": 1000, "unit_amount": "5", "flat_amount": 500},
    {"up_to": None, "unit_amount": "2.5", "flat_amount": 1000},
]
# code, name, amount, pay_in_advance, [(meter, model, properties)]
PLANS: list[tuple[str, str, int, bool, list[tuple[str, str, dict[str, Any]]]]] = [
    ("starter", "Starter", 1900, True, [
        ("api_calls", "per_unit", {"unit_amount": "0.25"}),
        ("storage_gb", "graduated", {"tiers": TIERS}),
        ("sms", "package", {"package_size": 2, "package_amount": 500, "free_units": 1}),
    ]),
    ("growth", "Growth", 9900, False, [
        ("api_calls", "graduated", {"tiers": TIERS}),
        ("bandwidth_mb", "volume", {"tiers": TIERS}),
        ("compute_s", "per_unit", {"unit_amount": "0.015"}),
    ]),
    ("scale", "Scale", 29900, True, [
        ("storage_gb", "volume", {"tiers": TIERS}),
        ("bandwidth_mb", "per_unit", {"unit_amount": "0.8"}),
        ("sms", "graduated", {"tiers": TIERS}),
    ]),
    ("metered", "Metered", 0, False, [
        ("compute_s", "volume", {"tiers": TIERS}),
        ("api_calls", "package", {"package_size": 2, "package_amount": 150}),
        ("storage_gb", "per_unit", {"unit_amount": "12.5"}),
    ]),
]  # fmt: skip


@dataclass
class Plan:
    id: str
    amount: int
    pay_in_advance: bool
    charges: list[tuple[str, Any]]  # (meter id, parsed pricing charge)


@dataclass
class World:
    org_id: str
    meters: dict[str, str]  # event_name → id
    plans: list[Plan]
    customers: list[str]
    subscriptions: list[str]
    period_end: datetime
    run_at: datetime
    usage: dict[str, list[Decimal]]  # per charged meter (by plan slot): units per subscription
    events: int


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(),
    )  # fmt: skip


def chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def owner_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def copy_rows(
    rt: Runtime, org_id: str, table: str, columns: str, rows: list[tuple[Any, ...]]
) -> None:
    """Bulk insert through the app role in a transaction scoped to the org: COPY into a
    temporary table (COPY FROM refuses tables with row-level security), then one INSERT."""
    with rt.db.transaction(org_id) as session:
        session.execute(text(f"CREATE TEMPORARY TABLE incoming (LIKE {table}) ON COMMIT DROP"))
        raw = session.connection().connection.driver_connection
        assert raw is not None
        with raw.cursor().copy(f"COPY incoming ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        insert = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM incoming"  # noqa: S608
        session.execute(text(insert))  # (table and columns are this file's constants)


# --- setup -------------------------------------------------------------------------------


def create_catalog(rt: Runtime) -> tuple[str, dict[str, str], list[Plan]]:
    clock = FrozenClock(T0 - timedelta(days=1))
    with rt.db.transaction() as session:
        org = org_service.create_org(session, name="Bench Billing", now=clock.now())
        org.invoice_grace_seconds = 0  # finalized in the same run, once the meters allow
        org_id = org.id
    who = Principal(org_id=org_id, role=Role.OWNER)
    meters: dict[str, str] = {}
    plans: list[Plan] = []
    with rt.db.transaction(org_id) as session:
        for name, agg, prop in METERS:
            meter = meter_service.create(
                session, who,
                MeterIn(event_name=name, name=name.replace("_", " ").title(), aggregation=agg,
                        value_property=prop),
                clock,
            )  # fmt: skip
            meters[name] = meter.id
        for code, name, amount, advance, charges in PLANS:
            plan, _ = plan_service.create(
                session, who,
                PlanIn(code=code, name=name, currency="eur", interval="month", amount=amount,
                       pay_in_advance=advance,
                       charges=[ChargeIn(meter=m, model=model, properties=props)  # type: ignore[arg-type]
                                for m, model, props in charges]),
                clock,
            )  # fmt: skip
            parsed = [
                (meters[m], parse_charge(meters[m], model, props, None))
                for m, model, props in charges
            ]
            plans.append(Plan(plan.id, amount, advance, parsed))
    return org_id, meters, plans


def create_customers_and_subscriptions(
    rt: Runtime, org_id: str, plans: list[Plan], n: int
) -> tuple[list[str], list[str], datetime]:
    """The rows `customers.service.create` and `subscriptions.service.create` write, COPYed
    (domain events of the creation are left out: billing never reads them)."""
    with rt.db.transaction(org_id) as session:
        plan_row = plan_service.resolve(session, org_id, plans[0].id)
        start, end = support.first_period(T0, T0, support.interval_of(plan_row), "UTC")
    assert start == T0
    customers = new_ids("cus", n)
    subscriptions = new_ids("sub", n)
    created = T0 - timedelta(hours=1)
    with progress_bar() as bar:
        task = bar.add_task("customers", total=n)
        for part in chunks(n, COPY_ROWS):
            copy_rows(
                rt, org_id,
                "customers",
                "org_id, id, external_id, name, email, currency, timezone, locale, address,"
                " tax_exempt, tax_kind, metadata, created_at, updated_at",
                [
                    (org_id, customers[i], f"c{i}", f"Customer {i}", f"c{i}@example.com",
                     "eur", "UTC", "en", '{"country": "DE", "city": "Berlin"}', False,
                     "individual", "{}", created, created)
                    for i in part
                ],
            )  # fmt: skip
            bar.advance(task, len(part))
        task = bar.add_task("subscriptions", total=n)
        for part in chunks(n, COPY_ROWS):
            copy_rows(
                rt, org_id,
                "subscriptions",
                "org_id, id, customer_id, plan_id, plan_version, status, quantity,"
                " coupon_periods_used, start_at, billing_anchor, trial_will_end_sent,"
                " current_period_start, current_period_end, cancel_at_period_end,"
                " next_action_at, metadata, entitlement_overrides, created_at, updated_at",
                [
                    (org_id, subscriptions[i], customers[i], plans[i % len(plans)].id, 1,
                     "active", 1, 0, T0, T0, False, start, end, False, end, "{}", "{}",
                     created, created)
                    for i in part
                ],
            )  # fmt: skip
            bar.advance(task, len(part))
    return customers, subscriptions, end


def ingest_usage(
    rt: Runtime, world: World, meters: list[tuple[str, str, str | None]], per_meter: int,
    now: datetime,
) -> None:  # fmt: skip
    """Usage of the period for every subscription and charged meter, through the ingest
    service; remembers each subscription's units per charge for the checks."""
    rng = random.Random(7)
    spec = {name: (agg, prop) for name, agg, prop in meters}
    by_id = {mid: name for name, mid in world.meters.items()}
    seconds = int((world.period_end - T0).total_seconds())
    n = len(world.subscriptions)
    total = n * 3 * per_meter
    batch: list[dict[str, Any]] = []
    with progress_bar() as bar:
        task = bar.add_task("usage events", total=total)

        def flush() -> None:
            with rt.db.transaction(world.org_id) as session:
                result = ingest(session, world.org_id, batch, now, timedelta(minutes=5))
            assert result.accepted == len(batch), (result.accepted, result.rejected[:3])
            bar.advance(task, len(batch))
            batch.clear()

        for i in range(n):
            plan = world.plans[i % len(world.plans)]
            for slot, (meter_id, _) in enumerate(plan.charges):
                name = by_id[meter_id]
                agg, prop = spec[name]
                values = []
                for k in range(per_meter):
                    ts = T0 + timedelta(seconds=rng.randrange(seconds))
                    event: dict[str, Any] = {
                        "event_id": f"e{i}-{slot}-{k}", "customer": world.customers[i],
                        "event_name": name, "timestamp": ts.isoformat(),
                    }  # fmt: skip
                    if prop is not None:
                        value = rng.randrange(1, 1000)
                        event["properties"] = {prop: value}
                        values.append(value)
                    batch.append(event)
                    if len(batch) == MAX_BATCH:
                        flush()
                units = {"count": per_meter, "sum": sum(values), "max": max(values, default=0)}
                world.usage.setdefault(f"{i % len(world.plans)}:{slot}", []).append(
                    Decimal(units[agg])
                )
        if batch:
            flush()
    world.events = total


def setup(rt: Runtime, args: argparse.Namespace) -> World:
    started = time.perf_counter()
    org_id, meters, plans = create_catalog(rt)
    customers, subscriptions, period_end = create_customers_and_subscriptions(
        rt, org_id, plans, args.subscriptions
    )
    lateness = timedelta(seconds=3600)  # MeterIn's default, what the meters were made with
    world = World(
        org_id, meters, plans, customers, subscriptions, period_end,
        run_at=period_end + lateness + timedelta(seconds=1), usage={}, events=0,
    )  # fmt: skip
    ingest_usage(rt, world, METERS, args.events_per_meter, world.run_at)
    with psycopg.connect(owner_conninfo(rt.db.urls.owner), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")  # what autovacuum would have done by billing day
    print(
        f"setup: {len(subscriptions):,} customers and subscriptions, {world.events:,} usage "
        f"events, in {time.perf_counter() - started:.0f} s"
    )
    return world


# --- the run -----------------------------------------------------------------------------


def checkpoint(url: str) -> None:
    """Start each timed phase without the previous phase's dirty pages to write."""
    try:
        with psycopg.connect(owner_conninfo(url), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error:
        pass  # not allowed for this owner: fine, just noisier


def run_in_process(
    rt: Runtime, world: World, chunk: int
) -> tuple[billing.RunResult, float, tuple[float, float]]:
    done = {"subscriptions": 0, "invoices": 0}
    last = [time.perf_counter()]
    started = time.perf_counter()

    def progress(phase: str, count: int) -> None:
        done[phase] += count
        now = time.perf_counter()
        if now - last[0] >= 5:
            last[0] = now
            print(
                f"  {now - started:6.1f} s: {done['subscriptions']:,} subscriptions billed, "
                f"{done['invoices']:,} drafts finalized",
                flush=True,
            )

    settle_garbage_collector()  # as `kassa billing run` does (here: the setup's objects too)
    cpu, postgres = time.process_time(), postgres_cpu_seconds()
    result = billing.run(
        rt.db, FrozenClock(world.run_at), org_id=world.org_id, chunk=chunk, progress=progress
    )
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    rt.db.engine.dispose()  # the backends' time reaches the postmaster
    return result, elapsed, (cpu, postgres_cpu_seconds() - postgres)


def _worker(
    url: str, org_id: str, run_at: datetime, chunk: int, barrier: Any, results: Any
) -> None:
    configure_logging("WARNING", "console")
    tmp = Path(tempfile.mkdtemp(prefix="kassa-bench-worker-"))
    rt = Runtime.build(make_settings(tmp, url))
    try:
        with rt.db.transaction(org_id) as session:  # connect before the start
            session.execute(text("SELECT 1"))
        settle_garbage_collector()  # as `kassa worker` and `kassa billing run` do
        barrier.wait()
        cpu = time.process_time()
        result = billing.run(rt.db, FrozenClock(run_at), org_id=org_id, chunk=chunk)
        results.put((
            result.transitions, result.invoices_created, result.invoices_finalized,
            time.process_time() - cpu,
        ))  # fmt: skip
    finally:
        rt.close()
        shutil.rmtree(tmp, ignore_errors=True)


def run_in_processes(
    url: str, world: World, chunk: int, workers: int
) -> tuple[billing.RunResult, float, tuple[float, float]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, world.org_id, world.run_at, chunk, barrier, results))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    started, postgres = time.perf_counter(), postgres_cpu_seconds()
    totals = billing.RunResult(world.run_at)
    python = 0.0
    for _ in procs:
        transitions, created, finalized, cpu = results.get()
        totals.transitions += transitions
        totals.invoices_created += created
        totals.invoices_finalized += finalized
        python += cpu
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()  # (its connections close: their backends' time reaches the postmaster)
        if p.exitcode != 0:
            raise SystemExit(f"worker {p.pid} exited with {p.exitcode}")
    return totals, elapsed, (python, postgres_cpu_seconds() - postgres)


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the PostgreSQL processes on this machine, counting the
    exited backends of closed connections (the postmaster's children's time), from /proc
    (0 where there is none)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            line = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        if line[line.index("(") + 1 : line.rindex(")")].startswith("postgres"):
            fields = line[line.rindex(")") + 2 :].split()
            total += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return total


# --- checks and the floor ----------------------------------------------------------------


def check(rt: Runtime, world: World) -> tuple[int, int]:
    """Everything billed once, finalized, numbered without gaps, rated right, in the ledger.
    Returns (invoices, lines)."""
    n = len(world.subscriptions)
    org = {"org": world.org_id}
    with rt.db.transaction(world.org_id) as session:
        invoices, subs, finalized, top, distinct = session.execute(
            text(
                "SELECT count(*), count(DISTINCT subscription_id),"
                " count(*) FILTER (WHERE status IN ('open', 'paid')), max(sequence),"
                " count(DISTINCT sequence) FROM invoices WHERE org_id = :org"
            ),
            org,
        ).one()
        lines = session.execute(
            text("SELECT count(*) FROM invoice_lines WHERE org_id = :org"), org
        ).scalar_one()
        moved = session.execute(
            text(
                "SELECT count(*) FROM subscriptions WHERE org_id = :org AND status = 'active'"
                " AND current_period_start = :end AND next_action_at = current_period_end"
                " AND current_period_end > :end"
            ),
            {**org, "end": world.period_end},
        ).scalar_one()
        usage = {
            (plan_id, meter_id): (Decimal(units), int(amount))
            for plan_id, meter_id, units, amount in session.execute(
                text(
                    "SELECT i.plan_id, l.meter_id, sum(l.quantity), sum(l.amount)"
                    " FROM invoice_lines l JOIN invoices i"
                    " ON i.org_id = l.org_id AND i.id = l.invoice_id"
                    " WHERE l.org_id = :org AND l.kind = 'usage' GROUP BY 1, 2"
                ),
                org,
            )
        }
        breaches = verify(session, world.org_id)
    problems = []
    if (invoices, subs) != (n, n):
        problems.append(f"{invoices} invoices for {subs} of {n} subscriptions")
    if finalized != invoices:
        problems.append(f"{invoices - finalized} invoices not finalized")
    if top != invoices or distinct != invoices:
        problems.append(f"numbers: highest {top}, {distinct} distinct, {invoices} invoices")
    if moved != n:
        problems.append(f"{n - moved} subscriptions not rolled over to the next period")
    expected_lines = sum(3 + (world.plans[i % len(world.plans)].amount > 0) for i in range(n))
    if lines != expected_lines:
        problems.append(f"{lines} invoice lines, expected {expected_lines}")
    for p_index, plan in enumerate(world.plans):
        for slot, (meter_id, charge) in enumerate(plan.charges):
            units = world.usage[f"{p_index}:{slot}"]
            want = (
                sum(units, Decimal(0)),
                sum(rate_charge(charge, Usage(u)).amount for u in units),
            )
            got = usage.get((plan.id, meter_id))
            if got != want:
                problems.append(f"plan {p_index} charge {slot}: billed {got}, expected {want}")
    problems += [f"ledger: {b}" for b in breaches[:10]]
    if problems:
        raise SystemExit("check failed:\n  " + "\n  ".join(problems))
    print(
        f"check: {invoices:,} invoices (one per subscription), all finalized, numbers "
        f"1..{top:,} gapless, {lines:,} lines, usage units and amounts as rated from the "
        f"events, subscriptions rolled over; ledger verified"
    )
    return invoices, lines


def copy_floor(url: str, work: Path, org_id: str, repeat: int = 3) -> list[float]:
    """COPY the run's own invoice and line rows into tables of the same shape (LIKE …
    INCLUDING ALL: columns, defaults, checks, indexes, unique keys; not the triggers),
    ``repeat`` times into fresh tables: the seconds of each (this machine's speed drifts a lot
    from minute to minute, and one COPY of a few seconds catches it as it is: README)."""
    with psycopg.connect(owner_conninfo(url), autocommit=True) as conn:
        conn.execute("SELECT set_config('app.org_id', %s, false)", (org_id,))
        files = {}
        for table in ("invoices", "invoice_lines"):
            path = work / f"{table}.copy"
            with path.open("wb") as out, conn.cursor().copy(
                sql.SQL("COPY (SELECT * FROM {} WHERE org_id = {}) TO STDOUT").format(
                    sql.Identifier(table), sql.Literal(org_id)
                )
            ) as copy:  # fmt: skip
                for data in copy:
                    out.write(data)
            files[table] = path
    timings = []
    for _ in range(repeat):
        with psycopg.connect(owner_conninfo(url), autocommit=True) as conn:
            for table in files:
                target = sql.Identifier(f"bench_{table}")
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
                conn.execute(
                    sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                        target, sql.Identifier(table)
                    )
                )
        checkpoint(url)
        with psycopg.connect(owner_conninfo(url)) as conn:
            started = time.perf_counter()
            with conn.transaction():
                for table, path in files.items():
                    with path.open("rb") as src, conn.cursor().copy(
                        sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(f"bench_{table}"))
                    ) as copy:  # fmt: skip
                        while block := src.read(1 << 20):
                            copy.write(block)
            timings.append(time.perf_counter() - started)
    with psycopg.connect(owner_conninfo(url), autocommit=True) as conn:
        for table, path in files.items():
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(f"bench_{table}")))
            path.unlink()
    return timings


def drop_databases(url: str, *, leftovers: bool = False) -> None:
    """Drop this run's database, or (``leftovers``) those of earlier runs that were killed
    before they could (their process is gone)."""
    admin = make_url(owner_conninfo(url)).set(database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        names = [DATABASE]
        if leftovers:
            prefix = DATABASE.rsplit("_", 1)[0] + "_"
            names = [
                name
                for (name,) in conn.execute("SELECT datname FROM pg_database")
                if name.startswith(prefix)
                and name[len(prefix) :].isdigit()
                and not _alive(int(name[len(prefix) :]))
            ]
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=billing.CHUNK)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--events-per-meter", type=int, default=3)
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    os.environ.setdefault("PYTEST_XDIST_WORKER", "bench")
    own_database = "KASSA_DATABASE_URL" not in os.environ
    url = os.environ.get("KASSA_DATABASE_URL") or _fresh_database(DATABASE)
    if own_database and "KASSA_TEST_DATABASE_URL" not in os.environ:
        drop_databases(url, leftovers=True)  # a local server: its pids are this machine's
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up below when killed
    work = Path(tempfile.mkdtemp(prefix="kassa-bench-billing-"))
    rt = Runtime.build(make_settings(work, url))
    try:
        migrate.upgrade(rt.db.urls, rt.settings)
        world = setup(rt, args)
        checkpoint(url)
        print(
            f"billing run as of {world.run_at.isoformat()} (pid {os.getpid()}, "
            f"{args.workers} worker(s), chunk {args.chunk}) …",
            flush=True,
        )
        if args.workers == 1:
            result, run_s, cpu = run_in_process(rt, world, args.chunk)
        else:
            result, run_s, cpu = run_in_processes(url, world, args.chunk, args.workers)
        invoices, lines = check(rt, world)
        floors = copy_floor(url, work, world.org_id)
        floor_s = statistics.median(floors)
    finally:
        rt.close()
        shutil.rmtree(work, ignore_errors=True)
        if own_database:
            drop_databases(url)
    n = len(world.subscriptions)
    print()
    print(
        f"run    {n:,} subscriptions: {result.transitions:,} transitions, "
        f"{result.invoices_created:,} invoices created, {result.invoices_finalized:,} "
        f"finalized ({args.workers} worker(s), chunk {args.chunk})"
    )
    print(f"run    {run_s:8.1f} s   {invoices / run_s:10,.0f} invoices/s")
    print(
        f"cpu    {cpu[0]:8.1f} s in the billing process(es), {cpu[1]:.1f} s in PostgreSQL "
        f"({(cpu[0] + cpu[1]) / run_s:.2f} of {os.cpu_count()} cores busy)"
    )
    print(
        f"floor  {floor_s:8.1f} s   {invoices / floor_s:10,.0f} invoices/s   (COPY of the same "
        f"{invoices:,} invoice and {lines:,} line rows; median of "
        f"{', '.join(f'{f:.1f}' for f in floors)} s)"
    )
    ok = run_s <= 5 * floor_s and run_s < 60
    print(
        f"ratio  run / floor = {run_s / floor_s:.1f}x   (target ≤ 5x floor and < 60 s: "
        f"{'met' if ok else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
