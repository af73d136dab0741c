"""Engines and sessions. The application always connects as the non-owner app role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import msgspec
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

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


class Database:
    """The app-role engine and its session factory."""

    def __init__(self, urls: DatabaseUrls, pool_size: int = 10) -> None:
        self.urls = urls
        self.engine: Engine = create_engine(
            urls.app, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
            json_deserializer=_read_json,
        )  # fmt: skip
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False, autoflush=True)

    def session(self) -> Session:
        return self.sessionmaker()

    @contextmanager
    def transaction(self, org_id: str | None = None) -> Iterator[Session]:
        """A job/CLI boundary: one transaction, scoped to ``org_id``, committed on success."""
        with self.sessionmaker() as session, session.begin():
            if org_id is not None:
                rls.set_org(session, org_id)
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
