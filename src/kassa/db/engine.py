"""Engines and sessions. The application always connects as the non-owner app role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from kassa.config import Settings
from kassa.db import embedded, rls


@dataclass(frozen=True)
class DatabaseUrls:
    owner: str
    app: str


def _normalize(url: str) -> str:
    """Accept ``postgres://``/``postgresql://`` and always use the psycopg 3 driver."""
    u = make_url(url)
    if u.drivername in ("postgres", "postgresql"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def resolve_urls(settings: Settings) -> DatabaseUrls:
    """Owner and app-role URLs; start embedded PostgreSQL when no URL is configured."""
    owner = settings.database_url or embedded.start(settings.data_dir)
    owner = _normalize(owner)
    if settings.app_database_url:
        return DatabaseUrls(owner, _normalize(settings.app_database_url))
    password = settings.app_db_password.get_secret_value() if settings.app_db_password else None
    app = make_url(owner).set(username=settings.app_db_role, password=password)
    return DatabaseUrls(owner, app.render_as_string(hide_password=False))


# JSON columns as PostgreSQL sends them, decoded by msgspec (in C, a few times faster than
# the json module; the same values: numbers with a fraction are floats, as there)
_read_json = msgspec.json.Decoder().decode


@dataclass(frozen=True)
class Deadline:
    """How long one statement may run and one lock may be waited for, in milliseconds
    (PostgreSQL's ``statement_timeout`` and ``lock_timeout``; 0 would mean no limit)."""

    statement_ms: int
    lock_ms: int

    def apply(self, conn: Connection | Session) -> None:
        """Set both for the current transaction only (``SET LOCAL``: pooling stays safe)."""
        conn.execute(_SET_DEADLINE, {"s": f"{self.statement_ms}ms", "l": f"{self.lock_ms}ms"})


_SET_DEADLINE = text(
    "SELECT set_config('statement_timeout', :s, true), set_config('lock_timeout', :l, true)"
)
REQUEST_DEADLINE = Deadline(statement_ms=5_000, lock_ms=2_000)
JOB_DEADLINE = Deadline(statement_ms=120_000, lock_ms=30_000)


class Database:
    """The app-role engines and their session factories.

    Two pools on the same role: ``engine`` for jobs, the CLI and operations (its checkout
    waits up to 30 s), and ``api_engine`` for API requests alone, whose checkout gives up
    after ``request_pool_timeout`` seconds (answered 503) and whose every transaction carries
    the request deadline. Requests therefore never queue behind the billing run's
    connections, nor jobs behind a flood of requests. Connections open on first use."""

    def __init__(
        self,
        urls: DatabaseUrls,
        pool_size: int = 10,
        *,
        request_deadline: Deadline = REQUEST_DEADLINE,
        job_deadline: Deadline = JOB_DEADLINE,
        request_pool_timeout: float = 2.0,
    ) -> None:
        self.urls = urls
        self.pool_size = pool_size
        self.job_deadline = job_deadline
        self.request_deadline = request_deadline
        options: dict[str, Any] = {
            "pool_size": pool_size,
            "max_overflow": pool_size,
            "pool_pre_ping": True,
            "json_deserializer": _read_json,
        }
        self.engine: Engine = create_engine(urls.app, **options)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)
        self.api_engine: Engine = create_engine(
            urls.app, pool_timeout=request_pool_timeout, **options
        )
        self.api_sessionmaker = sessionmaker(
            self.api_engine, expire_on_commit=False, autoflush=True
        )

        @event.listens_for(self.api_sessionmaker, "after_begin")
        def _request_deadline(session: Session, tx: SessionTransaction, conn: Connection) -> None:
            # fires when the request's transaction first takes its connection
            request_deadline.apply(conn)

    def session(self) -> Session:
        return self.sessionmaker()

    @contextmanager
    def transaction(self, org_id: str | None = None) -> Iterator[Session]:
        """A job/CLI boundary: one transaction, scoped to ``org_id``, committed on success,
        under the job deadline."""
        with self.sessionmaker() as session, session.begin():
            self.job_deadline.apply(session)
            if org_id is not None:
                rls.set_org(session, org_id)
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.api_engine.dispose()
