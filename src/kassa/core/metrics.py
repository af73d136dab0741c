"""Prometheus metrics. One registry per process; `/metrics` exposes it."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "kassa_http_requests_total",
    "HTTP requests handled, by route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "kassa_http_request_duration_seconds",
    "HTTP request latency by route template.",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS = Counter(
    "kassa_jobs_total",
    "Background jobs run by this process, by task and outcome.",
    ["task", "outcome"],
)
BILLING_FAILURES = Counter(
    "kassa_billing_failures_total",
    "Subscriptions (or drafts) a billing run could not bill and recorded, by phase and code.",
    ["phase", "code"],
)
LIMIT_REFUSALS = Counter(
    "kassa_limit_refusals_total",
    "Requests refused by a limit (docs/limits.md), by problem code: payload_too_large, "
    "org_concurrency_limit, lock_timeout, statement_timeout, database_busy.",
    ["code"],
)
