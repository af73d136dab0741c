"""Rate limits on the ``limits`` library: in memory, or in Redis shared by all processes."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from kassa.core.errors import RateLimited


class RateLimiter:
    """Moving-window limits keyed by identifiers such as ("api", org_id, actor_id)."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.storage_uri = redis_url or "memory://"
        self._strategy = MovingWindowRateLimiter(storage_from_string(self.storage_uri))
        self._parsed: dict[str, list[RateLimitItem]] = {}

    def _items(self, spec: str) -> list[RateLimitItem]:
        items = self._parsed.get(spec)
        if items is None:
            items = self._parsed[spec] = parse_many(spec)
        return items

    def _retry_after(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
        stats = self._strategy.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def hit(self, spec: str, *identifiers: str) -> None:
        """Count one request; raise 429 with Retry-After when any limit in ``spec`` is spent."""
        for item in self._items(spec):
            if not self._strategy.hit(item, *identifiers):
                retry = self._retry_after(item, identifiers)
                raise RateLimited(
                    detail=f"Rate limit of {item} exceeded; retry in {retry} s.",
                    headers={"Retry-After": str(retry)},
                )

    def check(self, spec: str, *identifiers: str, code: str = "rate_limited") -> None:
        """Raise 429 if a limit is already spent, without counting this call."""
        for item in self._items(spec):
            if not self._strategy.test(item, *identifiers):
                retry = self._retry_after(item, identifiers)
                err = RateLimited(
                    detail=f"Too many attempts; retry in {retry} s.",
                    headers={"Retry-After": str(retry)},
                )
                err.extra["code"] = code
                raise err

    def record(self, spec: str, *identifiers: str) -> None:
        """Count an event (e.g. a failed login) against ``spec`` without raising."""
        for item in self._items(spec):
            self._strategy.hit(item, *identifiers)

    def reset(self) -> None:
        self._strategy.storage.reset()
