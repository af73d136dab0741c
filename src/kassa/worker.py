"""The procrastinate job app: Postgres-backed queue, any number of workers anywhere."""

from __future__ import annotations

from typing import Any

import procrastinate
from sqlalchemy import make_url

from kassa.runtime import Runtime
from kassa.subscriptions import jobs as subscription_jobs
from kassa.system import jobs as system_jobs

# Each context with background work contributes a register(app, runtime) function.
REGISTRARS = (system_jobs.register, subscription_jobs.register)


def conninfo(sqlalchemy_url: str) -> str:
    """A libpq URL from a SQLAlchemy one (drop the ``+psycopg`` driver suffix)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def build_job_app(rt: Runtime) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(rt.db.urls.app), kwargs={"application_name": "kassa-worker"}
    )
    app = procrastinate.App(connector=connector)
    for register in REGISTRARS:
        register(app, rt)
    return app


def worker_options(rt: Runtime, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "concurrency": rt.settings.worker_concurrency,
        "update_heartbeat_interval": rt.settings.worker_heartbeat_seconds,
        "delete_jobs": "successful",
        "install_signal_handlers": False,
    }
    options.update(overrides)
    return options
