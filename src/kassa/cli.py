"""The ``kassa`` command line (Typer)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from kassa import __version__
from kassa.config import Settings
from kassa.core.context import Role
from kassa.core.logging import configure_logging
from kassa.runtime import Runtime, settle_garbage_collector

cli = typer.Typer(help="Kassa: multi-tenant meter-to-cash billing.", no_args_is_help=True)
admin = typer.Typer(help="Operator commands (platform level).", no_args_is_help=True)
cli.add_typer(admin, name="admin")
usage = typer.Typer(help="Usage metering maintenance.", no_args_is_help=True)
cli.add_typer(usage, name="usage")
billing_cli = typer.Typer(help="Billing runs.", no_args_is_help=True)
cli.add_typer(billing_cli, name="billing")
ledger_cli = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
cli.add_typer(ledger_cli, name="ledger")
console = Console(stderr=True)
# ``kassa billing run`` finished, but some subscriptions could not be billed (recorded)
BILLING_FAILED_EXIT = 3


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kassa {__version__}")
        raise typer.Exit()


@cli.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Kassa: multi-tenant meter-to-cash billing."""


def _boot(migrate: bool = True) -> Runtime:
    """Settings → logging → database (embedded if no URL) → migrations."""
    from kassa.db import migrate as migrations

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    started = time.perf_counter()
    with console.status("Starting the database…"):
        rt = Runtime.build(settings)
    if migrate:
        with console.status("Applying migrations…"):
            migrations.upgrade(rt.db.urls, settings)
    where = "embedded PostgreSQL" if not settings.database_url else "PostgreSQL"
    console.print(
        f"[green]✓[/] {where} ready and migrated in {time.perf_counter() - started:.1f} s"
    )
    return rt


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest version."""
    rt = _boot(migrate=True)
    rt.close()


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    demo: Annotated[
        bool, typer.Option(help="Create a demo organization and print a login.")
    ] = False,
    worker: Annotated[bool, typer.Option(help="Run a job worker inside this process.")] = True,
) -> None:
    """Run the API (and, by default, an in-process job worker)."""
    import uvicorn

    from kassa.app import create_app
    from kassa.system.api import start_metrics_listener

    rt = _boot(migrate=True)
    if demo:
        from kassa.demo import ensure_demo

        login = ensure_demo(rt)
        console.print(
            Panel.fit(
                f"API       http://{host}:{port}  (docs: http://{host}:{port}/docs)\n"
                f"Login     {login.email} / {login.password}\n"
                f"API key   {login.api_key}\n"
                f"Org       {login.org_id}",
                title="Kassa demo",
                border_style="cyan",
            )
        )
        console.print(
            f'Try:  curl -H "Authorization: Bearer {login.api_key}" http://{host}:{port}/v1/me',
            soft_wrap=True,
        )
    app = create_app(rt, run_worker=worker)
    stop_metrics = start_metrics_listener(rt)
    settle_garbage_collector()
    # uvicorn re-raises the SIGINT/SIGTERM it shut down for once it is done, which would kill
    # the process before atexit stops the embedded PostgreSQL; absorb it and exit normally.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=rt.settings.forwarded_allow_ips,
    )
    if stop_metrics is not None:
        stop_metrics()
    rt.close()


@cli.command("worker")
def run_worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once.")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Only these queues (repeatable).")] = None,
) -> None:
    """Run a standalone job worker (start any number, on any machine)."""
    from kassa.worker import build_job_app, worker_options

    rt = _boot(migrate=True)
    job_app = build_job_app(rt)
    settle_garbage_collector()
    options = worker_options(rt, name="kassa-worker", install_signal_handlers=True)
    if concurrency:
        options["concurrency"] = concurrency
    if queue:
        options["queues"] = queue

    async def run() -> None:
        async with job_app.open_async():
            await job_app.run_worker_async(**options)

    console.print("[green]✓[/] worker running; Ctrl-C stops it after the jobs in progress")
    asyncio.run(run())
    rt.close()


@admin.command("create-org")
def create_org(
    name: Annotated[str, typer.Option(help="Organization name.")],
    owner_email: Annotated[str, typer.Option(help="E-mail of the owner (created if new).")],
    password: Annotated[
        str | None, typer.Option(help="Owner's password if the user is new (default: generated).")
    ] = None,
    live: Annotated[bool, typer.Option(help="Create in live mode (default: test).")] = False,
    currency: Annotated[str, typer.Option(help="Default currency.")] = "eur",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
) -> None:
    """Create an organization with its owner (operators; works with signup disabled)."""
    from kassa.identity import service as identity
    from kassa.orgs import service as orgs
    from kassa.orgs.schemas import check_currency, check_timezone

    try:
        currency = check_currency(currency) or "eur"
        timezone = check_timezone(timezone) or "UTC"
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    rt = _boot(migrate=True)
    now = rt.clock.now()
    generated = None
    with rt.db.transaction() as session:
        user = identity.find_user(session, owner_email, lock=True)
        if user is None:
            if password is None:
                password = generated = secrets.token_urlsafe(12)
            identity.check_password(password, owner_email)
            user = identity.create_user(session, owner_email, password, None, now)
        org = orgs.create_org(
            session, name=name, now=now, currency=currency, timezone=timezone,
            mode="live" if live else "test",
        )  # fmt: skip
        identity.add_membership(session, org.id, user.id, Role.OWNER, now)
    table = Table(show_header=False)
    table.add_row("organization", f"{org.name} ({org.id}, {org.mode} mode)")
    table.add_row("owner", user.email)
    if generated:
        table.add_row("password", generated)
    Console().print(table)
    rt.close()


@admin.command("rotate-signing-key")
def rotate_signing_key() -> None:
    """Start signing with a new key; the old one stays valid until its tokens expire."""
    rt = _boot(migrate=True)
    with rt.db.transaction() as session:
        kid = rt.keyring.rotate(session)
    Console().print(f"new signing key [bold]{kid}[/]")
    rt.close()


@admin.command("list-orgs")
def list_orgs(
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array of objects, for scripts.")
    ] = False,
) -> None:
    """Every organization on this installation. Ids are never shortened: piped, the table
    takes its natural width; in a narrow terminal, names wrap instead."""
    import json

    from rich.table import Column
    from sqlalchemy import select

    from kassa.orgs.models import Organization

    rt = _boot(migrate=False)
    with rt.db.transaction() as session:
        orgs = [
            {"id": o.id, "name": o.name, "mode": o.mode, "currency": o.currency,
             "created_at": o.created_at.isoformat()}
            for o in session.scalars(select(Organization).order_by(Organization.id))
        ]  # fmt: skip
    rt.close()
    if as_json:
        typer.echo(json.dumps(orgs, indent=2))
        return
    id_width = max((len(o["id"]) for o in orgs), default=2)
    table = Table(
        Column("id", no_wrap=True, min_width=id_width), "name", "mode", "currency", "created"
    )
    for o in orgs:
        table.add_row(o["id"], o["name"], o["mode"], o["currency"], o["created_at"])
    out = Console()
    if not out.is_terminal:  # piped: the table's natural width, nothing wrapped or cut
        out = Console(width=10_000)
    out.print(table)


@usage.command("rebuild")
def rebuild_usage(
    org: Annotated[str | None, typer.Option(help="Only this organization (id).")] = None,
) -> None:
    """Recompute the hourly usage rollups from the raw events (the source of truth)."""
    from rich.progress import Progress
    from sqlalchemy import select

    from kassa.metering import service as metering
    from kassa.orgs.models import Organization

    rt = _boot(migrate=True)
    with rt.db.transaction() as session:
        stmt = select(Organization.id).order_by(Organization.id)
        if org:
            stmt = stmt.where(Organization.id == org)
        org_ids = list(session.scalars(stmt))
    if org and not org_ids:
        raise typer.BadParameter(f"no organization {org}")
    buckets = 0
    with Progress(console=console) as progress:
        task = progress.add_task("Rebuilding usage rollups", total=len(org_ids))
        for org_id in org_ids:
            with rt.db.transaction(org_id) as session:
                buckets += metering.rebuild(session, org_id)
            progress.advance(task)
    Console().print(f"rebuilt {buckets} hourly buckets in {len(org_ids)} organization(s)")
    rt.close()


def _org_exists(rt: Runtime, org_id: str) -> bool:
    from kassa.orgs import service as orgs

    with rt.db.transaction() as session:
        return bool(orgs.ids(session, only=org_id))


@billing_cli.command("run")
def billing_run(
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", help="Bill what was due at this instant (default: now)."),
    ] = None,
    org: Annotated[str | None, typer.Option(help="Only this organization (id).")] = None,
    chunk: Annotated[int, typer.Option(min=1, help="Subscriptions per transaction.")] = 1000,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes billing at once (e.g. one per core).")
    ] = 1,
) -> None:
    """Bill every subscription whose billing point has passed and finalize due drafts
    (idempotent and crash-safe: run it any number of times)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kassa.invoicing import billing

    rt = _boot(migrate=True)
    settle_garbage_collector()
    now = rt.clock.now()
    when = as_of.replace(tzinfo=as_of.tzinfo or UTC) if as_of else now
    if when > now:
        rt.close()
        raise typer.BadParameter(
            f"{when.isoformat()} is in the future; a run bills what is due now or earlier "
            "(use a test clock to simulate the future)",
            param_hint="--as-of",
        )
    if org is not None and not _org_exists(rt, org):
        rt.close()
        raise typer.BadParameter(f"no organization {org}", param_hint="--org")
    subs, drafts = billing.due_counts(rt.db, when, org)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console) as progress:
        tasks = {
            "subscriptions": progress.add_task("Subscriptions", total=subs),
            "invoices": progress.add_task("Drafts finalized", total=max(drafts, 1)),
        }

        def advance(phase: str, done: int) -> None:
            task = tasks[phase]
            total = progress.tasks[task].total or 0
            if progress.tasks[task].completed + done > total:
                progress.update(task, total=progress.tasks[task].completed + done)
            progress.advance(task, done)

        if workers == 1:
            result = billing.run(rt.db, rt.clock, when, org_id=org, chunk=chunk, progress=advance)
        else:
            result = billing.run_in_processes(
                rt.settings, when, processes=workers, org_id=org, chunk=chunk, progress=advance
            )
    Console().print(
        f"{result.invoices_created} invoice(s) issued, {result.invoices_finalized} finalized, "
        f"{result.transitions} subscription transition(s), as of {result.as_of.isoformat()}"
    )
    rt.close()
    if result.failed or result.failed_organizations:
        console.print(
            f"[yellow]{result.failed} subscription(s) could not be billed and were recorded "
            f"(kassa billing errors); {result.failed_organizations} organization(s) failed[/]"
        )
        raise typer.Exit(BILLING_FAILED_EXIT)


@billing_cli.command("errors")
def billing_errors(
    org: Annotated[str | None, typer.Option(help="Only this organization (id).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts.")] = False,
) -> None:
    """Subscriptions a billing run could not bill (their recorded billing_error); later
    runs retry them with backoff. Exit 0 whether or not there are any."""
    import json

    from kassa.orgs import service as orgs
    from kassa.subscriptions import service as subscriptions

    rt = _boot(migrate=True)
    with rt.db.transaction() as session:
        org_ids = orgs.ids(session, only=org)
    if org and not org_ids:
        rt.close()
        console.print(f"[red]no organization {org}[/]")
        raise typer.Exit(1)
    rows = []
    for org_id in org_ids:
        with rt.db.transaction(org_id) as session:
            for sub in subscriptions.billing_errors(session, org_id):
                rows.append({"org": org_id, "subscription": sub.id, **(sub.billing_error or {})})
    rt.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} subscription(s) with a billing error")
    for name in ("org", "subscription", "code", "attempts", "last failed", "next attempt"):
        table.add_column(name, no_wrap=name in ("org", "subscription"), overflow="fold")
    table.add_column("message", overflow="fold")
    for r in rows:
        table.add_row(
            r["org"],
            r["subscription"],
            r.get("code", ""),
            str(r.get("attempts", "")),
            r.get("last_failed_at", ""),
            r.get("next_attempt_at", ""),
            r.get("message", ""),
        )
    Console(width=max(Console().width, 200)).print(table)


@ledger_cli.command("verify")
def ledger_verify(
    org: Annotated[str | None, typer.Option(help="Only this organization (id).")] = None,
) -> None:
    """Check every ledger invariant; exit 1 on any breach."""
    from sqlalchemy import select

    from kassa.ledger.verify import verify
    from kassa.orgs.models import Organization

    rt = _boot(migrate=True)
    with rt.db.transaction() as session:
        stmt = select(Organization.id).order_by(Organization.id)
        if org:
            stmt = stmt.where(Organization.id == org)
        org_ids = list(session.scalars(stmt))
    breaches = []
    for org_id in org_ids:
        with rt.db.transaction(org_id) as session:
            breaches += [f"{org_id}: {b}" for b in verify(session, org_id)]
    rt.close()
    out = Console()
    for breach in breaches:
        out.print(f"[red]BREACH[/red] {breach}", soft_wrap=True)
    if breaches:
        raise typer.Exit(1)
    out.print(f"ledger sound in {len(org_ids)} organization(s)")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
