"""Embedded PostgreSQL (the ``pgserver`` package) for machines with nothing but Python.

The server lives in ``<data_dir>/pg``, is shared by every Kassa process on the machine
(pgserver counts handles) and is stopped when the last one exits. Data survives restarts.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
from psycopg import sql

DATABASE = "kassa"
_servers: dict[Path, Any] = {}
_lock = threading.Lock()


def start(data_dir: Path, database: str = DATABASE) -> str:
    """Start (or reuse) the embedded server; return an owner URL for ``database``."""
    pgdata = (data_dir / "pg").resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from pgserver import get_server  # type: ignore[attr-defined]

                pgdata.parent.mkdir(parents=True, exist_ok=True)
                server = get_server(pgdata, cleanup_mode="stop")
            _servers[pgdata] = server
    socket_dir = parse_qs(urlparse(server.get_uri()).query)["host"][0]
    admin = f"host={socket_dir} user=postgres dbname=postgres"
    tune(admin)
    ensure_database(admin, database)
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"


# initdb's defaults suit a toy; usage ingestion writes a lot. Reloadable settings apply at
# once, shared_buffers from the next start of the embedded server.
TUNING = {"max_wal_size": "4GB", "shared_buffers": "256MB", "checkpoint_timeout": "15min"}


def tune(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        current: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_file_settings WHERE sourcefile LIKE %s",
                ("%postgresql.auto.conf",),
            ).fetchall()
        )
        changed = False
        for name, value in TUNING.items():
            if current.get(name) != value:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(value)
                    )
                )
                changed = True
        if changed:
            conn.execute("SELECT pg_reload_conf()")


def ensure_database(conninfo: str, database: str) -> None:
    """CREATE DATABASE if missing (idempotent, tolerant of a concurrent creator)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        except psycopg.errors.DuplicateDatabase:
            pass
