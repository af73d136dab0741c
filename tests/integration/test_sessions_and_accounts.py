"""Issue 13's identity findings besides invitations: signup is no password oracle, e-mail
verification, password reset, idempotent replay only to the same principal, and ended
sessions whose access tokens stop working within a second (in process, across processes
through the database, and through Redis)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text

from kassa.app import create_app
from kassa.identity import revocations as revocations_module
from kassa.runtime import Runtime
from kassa.system.service import purge_expired
from tests.conftest import (
    PASSWORD,
    Tenant,
    add_member,
    last_token,
    mails_to,
    make_settings,
    signup,
    unique_email,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@contextmanager
def _app(database_url: str, tmp: Path, **settings: Any) -> Iterator[TestClient]:
    """Another Kassa process, as far as in-process state goes (its own caches, limits)."""
    rt = Runtime.build(make_settings(tmp, database_url, **settings))
    try:
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            yield client
    finally:
        rt.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _within(seconds: float, check: Callable[[], bool]) -> float:
    """How long until ``check()`` held; fails after ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - start


# ---- signup is no password oracle ---------------------------------------------------------
def test_signup_with_an_existing_email_never_checks_the_password(
    client: TestClient, tenant: Tenant
) -> None:
    right = client.post(
        "/v1/auth/signup", json={"org_name": "Again", "email": tenant.email, "password": PASSWORD}
    )
    wrong = client.post(
        "/v1/auth/signup",
        json={"org_name": "Again", "email": tenant.email, "password": "not the password 1"},
    )
    assert right.status_code == wrong.status_code == 202
    assert right.json() == wrong.json()
    assert "access_token" not in right.json()
    # no second organization was made: login still needs no `org`
    login = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    # the account's owner was told
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    rt.postman.drain()
    told = mails_to(rt.settings.data_dir / "outbox", tenant.email)
    assert any("already has an account" in str(m.get_body(("plain",))) for m in told)


def test_signup_of_an_existing_email_counts_as_a_failed_login(
    database_url: str, tmp_path: Path
) -> None:
    with _app(database_url, tmp_path, login_ip_max_failures="3/minute") as client:
        owner = signup(client)
        for _ in range(2):
            again = client.post(
                "/v1/auth/signup", json={"org_name": "X", "email": owner.email, "password": "x"}
            )
            assert again.status_code == 202
        failed = client.post("/v1/auth/login", json={"email": owner.email, "password": "nope"})
        assert failed.status_code == 401
        for path, body in (
            ("/v1/auth/signup", {"org_name": "X", "email": owner.email, "password": PASSWORD}),
            ("/v1/auth/login", {"email": owner.email, "password": PASSWORD}),
        ):
            limited = client.post(path, json=body)
            assert limited.status_code == 429, limited.text
            assert limited.json()["code"] == "too_many_failed_logins"


# ---- e-mail verification -------------------------------------------------------------------
def test_signup_mails_a_verification_link_and_verify_email_records_it(
    client: TestClient,
) -> None:
    tenant = signup(client)
    me = client.get("/v1/me", headers=tenant.headers).json()
    assert me["user"]["email_verified_at"] is None
    token = last_token(client, tenant.email, "ev_")
    verified = client.post("/v1/auth/verify_email", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified_at"] is not None
    assert client.get("/v1/me", headers=tenant.headers).json()["user"]["email_verified_at"]
    reused = client.post("/v1/auth/verify_email", json={"token": token})
    assert reused.status_code == 422 and reused.json()["code"] == "invalid_or_expired_token"
    again = client.post("/v1/auth/resend_verification", headers=tenant.headers)
    assert again.status_code == 202 and again.json()["detail"] == "Already verified."


def test_a_resent_verification_link_replaces_the_old_one(client: TestClient) -> None:
    tenant = signup(client)
    first = last_token(client, tenant.email, "ev_")
    assert client.post("/v1/auth/resend_verification", headers=tenant.headers).status_code == 202
    second = last_token(client, tenant.email, "ev_")
    assert first != second
    assert client.post("/v1/auth/verify_email", json={"token": first}).status_code == 422
    assert client.post("/v1/auth/verify_email", json={"token": second}).status_code == 200


# ---- password reset ------------------------------------------------------------------------
def test_forgot_password_answers_the_same_for_unknown_addresses(
    client: TestClient, tenant: Tenant
) -> None:
    unknown = unique_email("nobody")

    def timed(email: str) -> tuple[float, Any]:
        start = time.perf_counter()
        response = client.post("/v1/auth/forgot_password", json={"email": email})
        return time.perf_counter() - start, response

    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(5):
        for label, email in (("known", tenant.email), ("unknown", unknown)):
            took, response = timed(email)
            timings[label].append(took)
            assert response.status_code == 202
            assert response.json() == {
                "status": "check_your_email",
                "detail": "If an account uses this address, a link to reset its password is "
                "on its way. It works once and expires.",
            }
    known, unknown_ = (statistics.median(timings[k]) for k in ("known", "unknown"))
    assert abs(known - unknown_) < 0.05, timings  # no mail server on the request's path
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    rt.postman.drain()
    assert mails_to(rt.settings.data_dir / "outbox", unknown) == []


def test_unauthenticated_mail_per_address_is_limited(database_url: str, tmp_path: Path) -> None:
    with _app(database_url, tmp_path, mail_per_address_limit="2/hour") as client:
        owner = signup(client)
        answers = {
            client.post("/v1/auth/forgot_password", json={"email": owner.email}).text
            for _ in range(3)
        }
        assert len(answers) == 1
        again = client.post(
            "/v1/auth/signup", json={"org_name": "X", "email": owner.email, "password": "x"}
        )
        assert again.status_code == 202
        rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        rt.postman.drain()
        subjects = [m["Subject"] for m in mails_to(tmp_path / "outbox", owner.email)]
        assert subjects.count("Reset your Kassa password") == 2
        assert not any("sign up" in s for s in subjects)


def test_reset_password_is_one_time_and_ends_every_session(
    client: TestClient, tenant: Tenant
) -> None:
    other = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    sessions = [tenant.access_token, other.json()["access_token"]]
    assert client.post("/v1/auth/forgot_password", json={"email": tenant.email}).status_code == 202
    token = last_token(client, tenant.email, "pr_")
    weak = client.post("/v1/auth/reset_password", json={"token": token, "password": "short"})
    assert weak.status_code == 422
    new_password = "a brand new passphrase"
    reset = client.post("/v1/auth/reset_password", json={"token": token, "password": new_password})
    assert reset.status_code == 204, reset.text
    for access in sessions:  # at once, in this process
        assert client.get("/v1/me", headers=_bearer(access)).status_code == 401
    for refresh in (tenant.refresh_token, other.json()["refresh_token"]):
        assert client.post("/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    old = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    assert old.status_code == 401
    new = client.post("/v1/auth/login", json={"email": tenant.email, "password": new_password})
    assert new.status_code == 200
    assert client.get("/v1/me", headers=_bearer(new.json()["access_token"])).status_code == 200
    again = client.post("/v1/auth/reset_password", json={"token": token, "password": PASSWORD})
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "token"


def test_reset_tokens_expire(client: TestClient, tenant: Tenant, rt: Runtime) -> None:
    client.post("/v1/auth/forgot_password", json={"email": tenant.email})
    token = last_token(client, tenant.email, "pr_")
    with rt.db.transaction() as session:
        session.execute(
            text(
                "UPDATE user_tokens SET expires_at = now() - interval '1 second'"
                " WHERE user_id = :u AND purpose = 'reset_password'"
            ),
            {"u": tenant.user_id},
        )
    response = client.post("/v1/auth/reset_password", json={"token": token, "password": PASSWORD})
    assert response.status_code == 422
    assert purge_expired(rt.db, rt.clock.now()).user_tokens >= 1
    with rt.db.transaction() as session:
        left = session.execute(
            text("SELECT count(*) FROM user_tokens WHERE user_id = :u AND expires_at <= now()"),
            {"u": tenant.user_id},
        ).scalar_one()
    assert left == 0


# ---- idempotent replay after authorization -------------------------------------------------
def test_a_stored_response_is_replayed_only_to_its_principal(
    client: TestClient, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "create-key-1"}
    created = client.post("/v1/api_keys", json={"name": "secret"}, headers=headers)
    assert created.status_code == 201
    secret = created.json()["key"]

    viewer = add_member(client, tenant, "viewer")
    replay = client.post(
        "/v1/api_keys",
        json={"name": "secret"},
        headers={**viewer.headers, "Idempotency-Key": "create-key-1"},
    )
    assert replay.status_code == 403, replay.text  # authorized first
    assert secret not in replay.text

    admin = add_member(client, tenant, "admin")
    other = client.post(
        "/v1/api_keys",
        json={"name": "secret"},
        headers={**admin.headers, "Idempotency-Key": "create-key-1"},
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_in_use"
    assert secret not in other.text

    mine = client.post("/v1/api_keys", json={"name": "secret"}, headers=headers)
    assert mine.status_code == 201 and mine.json()["key"] == secret
    assert mine.headers["idempotent-replayed"] == "true"


# ---- ended sessions end their access tokens ------------------------------------------------
def test_logout_ends_the_access_token_at_once(client: TestClient) -> None:
    tenant = signup(client)
    assert client.get("/v1/me", headers=tenant.headers).status_code == 200
    logout = client.post("/v1/auth/logout", json={"refresh_token": tenant.refresh_token})
    assert logout.status_code == 204
    after = client.get("/v1/me", headers=tenant.headers)
    assert after.status_code == 401 and after.json()["code"] == "invalid_token"
    other = client.post("/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    assert client.get("/v1/me", headers=_bearer(other.json()["access_token"])).status_code == 200


def test_refresh_token_reuse_ends_the_familys_access_tokens(client: TestClient) -> None:
    tenant = signup(client)
    rotated = client.post("/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}).json()
    fresh = rotated["access_token"]
    assert client.get("/v1/me", headers=_bearer(fresh)).status_code == 200
    stolen = client.post("/v1/auth/refresh", json={"refresh_token": tenant.refresh_token})
    assert stolen.status_code == 401 and stolen.json()["code"] == "refresh_token_reused"
    for access in (tenant.access_token, fresh):
        assert client.get("/v1/me", headers=_bearer(access)).status_code == 401


def test_a_logout_reaches_another_process_within_a_second(
    client: TestClient, database_url: str, tmp_path: Path
) -> None:
    with _app(database_url, tmp_path) as elsewhere:
        tenant = signup(client)
        assert elsewhere.get("/v1/me", headers=tenant.headers).status_code == 200
        client.post("/v1/auth/logout", json={"refresh_token": tenant.refresh_token})
        took = _within(
            1.5, lambda: elsewhere.get("/v1/me", headers=tenant.headers).status_code == 401
        )
        assert took <= revocations_module.REFRESH_SECONDS + 0.3


@pytest.mark.skipif(not _redis_available(), reason="no Redis on 127.0.0.1:6379")
def test_revocations_are_shared_through_redis(
    database_url: str, tmp_path: Path, rt: Runtime
) -> None:
    with (
        _app(database_url, tmp_path / "a", redis_url=REDIS_URL) as a,
        _app(database_url, tmp_path / "b", redis_url=REDIS_URL) as b,
    ):
        rt_a: Runtime = a.app.state.runtime  # type: ignore[attr-defined]
        rt_b: Runtime = b.app.state.runtime  # type: ignore[attr-defined]
        assert rt_a.revocations.shared_through_redis and rt_b.revocations.shared_through_redis
        tenant = signup(a)
        assert b.get("/v1/me", headers=tenant.headers).status_code == 200
        a.post("/v1/auth/logout", json={"refresh_token": tenant.refresh_token})
        _within(1.5, lambda: b.get("/v1/me", headers=tenant.headers).status_code == 401)
        # the Redis set itself carries it: a session ended in Redis only (no database row)
        sid = "rtf_redisonly" + str(time.time_ns())
        with rt.db.sessionmaker() as session:
            session.begin()
            rt_a.revocations.revoke_after_commit(session, [sid], rt.clock.now())
            session.commit()
        with rt.db.sessionmaker() as session:
            _within(1.5, lambda: rt_b.revocations.is_revoked(session, sid, rt.clock.now()))
        score = redis.Redis.from_url(REDIS_URL).zscore(revocations_module.REDIS_KEY, sid)
        assert score is not None and score > time.time()
