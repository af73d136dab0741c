"""What every contract test shares: the checks, the examples budget, the call."""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

Case = schemathesis.Case[Any]  # generic over the operation type

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# Examples per operation and test; KASSA_FUZZ_EXAMPLES=300 goes deeper by hand.
FUZZ_EXAMPLES = int(os.environ.get("KASSA_FUZZ_EXAMPLES", "0"))


def settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=FUZZ_EXAMPLES or max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


def call_and_validate(case: Case, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    excluded: list[schemathesis.CheckFunction] = []
    if case.operation.path == "/ready" and response.status_code == 503:
        # The documented "not ready" answer, not a crash: these tests run no procrastinate
        # worker, so readiness fails on the worker heartbeat (and only on it: the database
        # is reachable and migrated). Everything but not_a_server_error still applies.
        checks = response.json()["checks"]
        assert checks["database"] == "ok", checks
        assert "head is" not in checks["migrations"], checks
        assert checks["worker"].startswith("0 worker"), checks
        excluded = [not_a_server_error]
    case.validate_response(response, checks=CHECKS, excluded_checks=excluded, headers=headers)
