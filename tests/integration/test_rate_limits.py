from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from kassa.app import create_app
from kassa.config import Settings
from kassa.core.errors import RateLimited
from kassa.core.ratelimit import RateLimiter
from kassa.runtime import Runtime
from tests.conftest import PASSWORD, make_settings, signup

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def strict_client(settings: Settings, rt: Runtime, tmp_path: Path) -> Iterator[TestClient]:
    tight = make_settings(
        tmp_path,
        str(settings.database_url),
        rate_limit_api="5/minute",
        rate_limit_public="4/minute",
        login_ip_max_failures="3/minute",
        login_max_failures=100,
    )
    runtime = Runtime.build(tight)
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client
    runtime.close()


def test_api_limit_per_key_answers_429_with_retry_after(strict_client: TestClient) -> None:
    tenant = signup(strict_client)
    statuses = [strict_client.get("/v1/me", headers=tenant.headers).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    limited = strict_client.get("/v1/me", headers=tenant.headers)
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_public_routes_are_limited_per_ip(strict_client: TestClient) -> None:
    statuses = [
        strict_client.post(
            "/v1/auth/login", json={"email": "x@example.com", "password": "p"}
        ).status_code
        for _ in range(5)
    ]
    assert statuses[-1] == 429


def test_failed_logins_per_ip_are_limited(strict_client: TestClient, client: TestClient) -> None:
    tenant = signup(client)  # made through the unthrottled app
    wrong = {"email": tenant.email, "password": "wrong-password!"}
    assert [strict_client.post("/v1/auth/login", json=wrong).status_code for _ in range(3)] == [
        401
    ] * 3
    blocked = strict_client.post(
        "/v1/auth/login", json={"email": tenant.email, "password": PASSWORD}
    )
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "too_many_failed_logins"


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.mark.skipif(not _redis_available(), reason="no Redis on 127.0.0.1:6379")
def test_redis_counters_are_shared_between_processes() -> None:
    # two limiters = two API processes pointed at the same Redis
    first, second = RateLimiter(REDIS_URL), RateLimiter(REDIS_URL)
    ident = uuid.uuid4().hex
    first.hit("3/minute", "api", ident)
    second.hit("3/minute", "api", ident)
    first.hit("3/minute", "api", ident)
    with pytest.raises(RateLimited) as caught:
        second.hit("3/minute", "api", ident)
    assert caught.value.headers["Retry-After"].isdigit()


def test_memory_counters_are_per_process() -> None:
    first, second = RateLimiter(), RateLimiter()
    first.hit("1/minute", "x")
    second.hit("1/minute", "x")  # a separate process would not share the count
    with pytest.raises(RateLimited):
        first.hit("1/minute", "x")
