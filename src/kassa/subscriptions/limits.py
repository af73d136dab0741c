"""Bounds on how much billing work one request or one job step may do, and on the times
billing accepts (docs/billing-safety.md). Set once per process from the settings
(``Runtime.build``); the defaults are the settings' defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kassa.config import Settings

# Times billing computes with (start, anchor, test clocks): far from datetime's edges, so
# period and time-zone arithmetic (a year-0001 clock in UTC+14) never overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Limits:
    max_backdate: timedelta = timedelta(days=366)
    max_future_start: timedelta = timedelta(days=1827)
    catchup_per_step: int = 24  # billing transitions of one subscription per request/step
    clock_advance_transitions: int = 2000  # transitions one test-clock advance may run
    plan_migration_per_request: int = 500
    retry_base: timedelta = timedelta(seconds=300)
    retry_max: timedelta = timedelta(days=1)

    def retry_after(self, attempts: int) -> timedelta:
        """The wait before the next attempt after ``attempts`` failed ones:
        min(2^(attempts-1) × base, max)."""
        exponent = min(max(attempts - 1, 0), 40)
        wait: timedelta = self.retry_base * (2**exponent)
        return min(wait, self.retry_max)


_current = Limits()


def get() -> Limits:
    return _current


def configure(settings: Settings) -> Limits:
    global _current
    _current = Limits(
        max_backdate=timedelta(days=settings.max_backdate_days),
        max_future_start=timedelta(days=settings.max_future_start_days),
        catchup_per_step=settings.max_catchup_periods_per_step,
        clock_advance_transitions=settings.max_clock_advance_transitions,
        plan_migration_per_request=settings.max_plan_migration_per_request,
        retry_base=timedelta(seconds=settings.billing_retry_base_seconds),
        retry_max=timedelta(seconds=settings.billing_retry_max_seconds),
    )
    return _current


def in_range(value: datetime) -> bool:
    return EARLIEST <= value < LATEST
