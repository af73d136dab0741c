"""The billing run, every minute: subscriptions advance (and bill), drafts finalize."""

from __future__ import annotations

import procrastinate

from kassa.core.metrics import JOBS
from kassa.invoicing import billing
from kassa.runtime import Runtime

ADVANCE_TASK = "kassa.subscriptions.advance_due"


def register(app: procrastinate.App, rt: Runtime) -> None:
    @app.periodic(cron="* * * * *", periodic_id="advance_due")
    @app.task(name=ADVANCE_TASK, queueing_lock=ADVANCE_TASK, queue="billing")
    def advance_due(timestamp: int) -> int:
        try:
            count = billing.run(rt.db, rt.clock).transitions
        except Exception:
            JOBS.labels(ADVANCE_TASK, "failed").inc()
            raise
        JOBS.labels(ADVANCE_TASK, "succeeded").inc()
        return count
