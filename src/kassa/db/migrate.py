"""Run Alembic migrations as the owner role; check whether the schema is at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool

from kassa.config import Settings
from kassa.db.engine import DatabaseUrls

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(urls: DatabaseUrls, settings: Settings, revision: str = "head") -> None:
    """Upgrade to ``revision``; creates/grants the application role on the way."""
    engine = create_engine(urls.owner, poolclass=pool.NullPool)
    cfg = alembic_config()
    password = settings.app_db_password.get_secret_value() if settings.app_db_password else None
    try:
        with engine.connect() as conn:
            # Serialize concurrent `kassa migrate` runs (several API processes starting at once).
            conn.exec_driver_sql("SELECT pg_advisory_lock(7315604413)")
            conn.commit()
            try:
                cfg.attributes["connection"] = conn
                cfg.attributes["app_role"] = settings.app_db_role
                cfg.attributes["app_password"] = password
                command.upgrade(cfg, revision)
            finally:
                conn.rollback()
                conn.exec_driver_sql("SELECT pg_advisory_unlock(7315604413)")
                conn.commit()
    finally:
        engine.dispose()
