from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog
from fastapi.testclient import TestClient

from kassa.app import create_app
from kassa.core.logging import configure_logging
from kassa.runtime import Runtime
from tests.conftest import PASSWORD, Tenant


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    echoed = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-Id": "bad id with spaces"})
    assert generated.headers["x-request-id"].startswith("req_")
    assert (
        client.get("/health").headers["x-request-id"]
        != client.get("/health").headers["x-request-id"]
    )


def test_errors_are_problem_json_with_request_id(client: TestClient) -> None:
    response = client.get("/v1/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
    assert response.headers["x-request-id"]


@pytest.fixture
def crashing_client(rt: Runtime) -> Iterator[TestClient]:
    app = create_app(rt)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_a_crash_is_a_500_problem_without_internals(crashing_client: TestClient) -> None:
    response = crashing_client.get("/boom", headers={"X-Request-Id": "crash-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "crash-1"
    body = response.json()
    assert body["code"] == "internal_error" and "crash-1" in body["detail"]
    assert "hunter2" not in response.text and "RuntimeError" not in response.text


def test_logs_are_json_with_context_and_redacted(
    client: TestClient, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    try:
        client.get("/v1/me", headers={**tenant.headers, "X-Request-Id": "log-1"})
        structlog.get_logger("test").info(
            "signup attempt by jane@example.com, call +49 170 1234567",
            password=PASSWORD, refresh_token="rt_abc", email="jane@example.com", count=3,
        )  # fmt: skip
        err = capsys.readouterr().err
    finally:
        configure_logging("WARNING", "console")
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    request_line = next(
        e for e in lines if e.get("event") == "request" and e.get("request_id") == "log-1"
    )
    assert request_line["org_id"] == tenant.org_id and request_line["user_id"] == tenant.user_id
    assert request_line["route"] == "/v1/me" and request_line["status"] == 200
    custom = next(e for e in lines if e.get("logger") == "test")
    assert custom["password"] == custom["refresh_token"] == custom["email"] == "[REDACTED]"
    assert custom["count"] == 3
    assert "jane@example.com" not in err and "1234567" not in err and PASSWORD not in err
    assert tenant.access_token not in err


def test_metrics_count_requests_by_route_and_status(client: TestClient, tenant: Tenant) -> None:
    client.get("/v1/me", headers=tenant.headers)
    text = client.get("/metrics").text
    assert 'kassa_http_requests_total{method="GET",route="/v1/me",status="200"}' in text
    assert "kassa_http_request_duration_seconds_bucket" in text
    assert "# TYPE kassa_jobs_in_queue gauge" in text
    assert "# TYPE kassa_jobs_total counter" in text


def test_health_and_readiness_report_their_checks(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    checks = ready.json()["checks"]
    from kassa.db.migrate import head_revision

    assert checks["database"] == "ok" and checks["migrations"] == f"at {head_revision()}"
    # no worker runs inside this test app, so readiness depends on other workers' heartbeats
    has_worker = not checks["worker"].startswith("0 ")
    assert ready.status_code == (200 if has_worker else 503)
