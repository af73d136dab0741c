"""HTTP edges (issue 13 §3): 405 answers list every allowed method, a cursor of another list
is refused, /metrics can be restricted by a token or moved to a separate listener."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from kassa.core.http import install_error_handlers
from kassa.runtime import Runtime
from tests.conftest import Tenant, make_customer, make_plan
from tests.server import free_port, serve


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/customers/cus_01M96PYS22C7PYJ1NDEQCSCAQQ", "DELETE, GET, PATCH"),
        ("DELETE", "/v1/customers", "GET, POST"),
        ("DELETE", "/v1/plans/basic", "GET, PATCH"),
        ("PUT", "/v1/invoices", "GET, POST"),
        ("POST", "/health", "GET"),
    ],
)
def test_a_405_lists_every_allowed_method(
    client: TestClient, tenant: Tenant, method: str, path: str, allowed: str
) -> None:
    response = client.request(method, path, headers=tenant.headers)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_405_on_a_path_two_routers_share_lists_both() -> None:
    """No two of Kassa's routers share a path today; this app has two that do, with the
    error handlers Kassa installs."""
    first, second = APIRouter(), APIRouter()

    @first.get("/things/{thing}")
    def read(thing: str) -> dict[str, str]:
        return {"thing": thing}

    @second.delete("/things/{thing}")
    def remove(thing: str) -> dict[str, str]:
        return {"thing": thing}

    @second.post("/things/{thing}")
    def change(thing: str) -> dict[str, str]:
        return {"thing": thing}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(first)
    app.include_router(second)
    with TestClient(app) as http:
        response = http.put("/things/one")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, POST"


def test_a_cursor_of_another_list_is_refused(client: TestClient, tenant: Tenant) -> None:
    for _ in range(2):
        make_customer(client, tenant)
        make_plan(client, tenant)
    customers = client.get("/v1/customers?limit=1", headers=tenant.headers).json()
    plans = client.get("/v1/plans?limit=1", headers=tenant.headers).json()
    cursor = customers["next_cursor"]
    assert cursor is not None and plans["next_cursor"] is not None
    own = client.get(f"/v1/customers?limit=1&cursor={cursor}", headers=tenant.headers)
    assert own.status_code == 200, own.text
    for path in ("/v1/plans", "/v1/subscriptions", "/v1/invoices", "/v1/members"):
        foreign = client.get(f"{path}?cursor={cursor}", headers=tenant.headers)
        assert foreign.status_code == 422, (path, foreign.text)
        assert foreign.json()["code"] == "invalid_cursor"
        assert foreign.json()["errors"][0]["field"] == "cursor"
    foreign = client.get(f"/v1/customers?cursor={plans['next_cursor']}", headers=tenant.headers)
    assert foreign.status_code == 422 and foreign.json()["code"] == "invalid_cursor"


def test_metrics_can_require_a_bearer_token(
    client: TestClient, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/metrics").status_code == 200  # open by default
    monkeypatch.setattr(rt.settings, "metrics_token", SecretStr("scrape-me-please"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me-please"}):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "kassa_http_requests" not in refused.text
    allowed = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
    assert allowed.status_code == 200
    assert "kassa_http_requests_total" in allowed.text


def test_metrics_can_move_to_a_separate_listener(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    with serve(database_url, tmp_path, worker=False, metrics_address=f"127.0.0.1:{port}") as server:
        with server.client() as http:
            assert http.get("/metrics").status_code == 404
            assert http.get("/health").status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert scraped.status_code == 200
        assert "kassa_http_requests_total" in scraped.text
        assert "kassa_jobs_in_queue" in scraped.text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_docs_load_nothing_from_outside(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert not re.findall(r"https?://", html.text), "a page that loads from elsewhere"
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    urls += re.findall(r"""url: ?["']([^"']+)["']""", html.text)  # Swagger UI's spec url
    urls += re.findall(r"""spec-url=["']([^"']+)["']""", html.text)  # ReDoc's
    assert "/openapi.json" in urls
    assert len(urls) >= 3, urls
    for url in urls:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
