"""Shared fixtures: a real PostgreSQL (embedded, or KASSA_TEST_DATABASE_URL), migrated once
per test process, and the real ASGI app. Tests isolate themselves by creating their own
organizations (which is also how tenancy is exercised), not by mocking anything."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy import make_url

from kassa.app import create_app
from kassa.config import Settings
from kassa.core.logging import configure_logging
from kassa.db import embedded
from kassa.db import migrate as migrations
from kassa.runtime import Runtime
from tests.server import free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"


def _fresh_database(name: str) -> str:
    """An empty database ``name`` on the test server; returns its owner URL."""
    base = os.environ.get("KASSA_TEST_DATABASE_URL")
    if base is None:
        base = embedded.start(ROOT / ".kassa-test", database="postgres")
    url = make_url(base).set(drivername="postgresql")
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url.set(drivername="postgresql+psycopg", database=name).render_as_string(
        hide_password=False
    )


def make_settings(tmp: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp,
        "secret_key": "test-secret-key-not-for-production",
        "rate_limit_api": "10000/second",
        "rate_limit_public": "10000/second",
        "login_ip_max_failures": "10000/minute",
        "mail_per_address_limit": "10000/minute",
        "log_format": "console",
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def database_url() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return _fresh_database(f"kassa_test_{worker}")


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    configure_logging("WARNING", "console")
    return make_settings(tmp_path_factory.mktemp("data"), database_url)


@pytest.fixture(scope="session")
def rt(settings: Settings) -> Iterator[Runtime]:
    runtime = Runtime.build(settings)
    migrations.upgrade(runtime.db.urls, settings)
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Tenant:
    org_id: str
    user_id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def signup(client: TestClient, name: str = "Acme Rentals", **extra: Any) -> Tenant:
    email = extra.pop("email", None) or unique_email("owner")
    response = client.post(
        "/v1/auth/signup", json={"org_name": name, "email": email, "password": PASSWORD, **extra}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Tenant(
        org_id=body["org"]["id"],
        user_id=body["user"]["id"],
        email=email,
        password=PASSWORD,
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
    )


def api_key(client: TestClient, tenant: Tenant, name: str = "server") -> dict[str, Any]:
    response = client.post("/v1/api_keys", json={"name": name}, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


_MAILS: dict[Path, EmailMessage] = {}


def mails_to(outbox: Path, email: str) -> list[EmailMessage]:
    """The messages the outbox mailer wrote for ``email``, oldest first."""
    found = []
    for path in sorted(outbox.glob("*.eml")):
        msg = _MAILS.get(path)
        if msg is None:
            parsed = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
            assert isinstance(parsed, EmailMessage)
            msg = _MAILS[path] = parsed
        if msg["To"] == email:
            found.append(msg)
    return found


def token_in(msg: EmailMessage, prefix: str) -> str:
    """The one-time token (``ivt_``, ``ev_``, ``pr_``) in a message's link."""
    body = msg.get_body(("plain",))
    assert body is not None
    match = re.search(rf"[?&]token=({prefix}[A-Za-z0-9]+)", body.get_content())
    assert match, body.get_content()
    return match.group(1)


def last_token(client: TestClient, email: str, prefix: str) -> str:
    """The token of the newest mail to ``email`` (after the background sender is done)."""
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    rt.postman.drain()
    found = mails_to(rt.settings.data_dir / "outbox", email)
    assert found, f"no mail to {email}"
    return token_in(found[-1], prefix)


def add_member(client: TestClient, tenant: Tenant, role: str) -> Tenant:
    """Invite a new e-mail with ``role`` and accept with the token from the mail."""
    email = unique_email(role)
    response = client.post(
        "/v1/invitations", json={"email": email, "role": role}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    token = last_token(client, email, "ivt_")
    accepted = client.post("/v1/invitations/accept", json={"token": token, "password": PASSWORD})
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    return Tenant(
        tenant.org_id, body["user"]["id"], email, PASSWORD,
        body["access_token"], body["refresh_token"],
    )  # fmt: skip


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free local port that keeps what it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                parsed = BytesParser(policy=default_policy).parsebytes(envelope.content)
                assert isinstance(parsed, EmailMessage)
                with sink._lock:
                    sink.messages.append(parsed)
                return "250 Message accepted for delivery"

        port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.url = f"smtp://127.0.0.1:{port}"

    def wait_for(self, to: str, count: int = 1, timeout: float = 10) -> list[EmailMessage]:
        """The messages to ``to`` once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [m for m in self.messages if m["To"] == to]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"{len(found)} mails to {to}, wanted {count}"
                return found
            time.sleep(0.05)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


@pytest.fixture
def tenant(client: TestClient) -> Tenant:
    return signup(client)


@pytest.fixture
def other_tenant(client: TestClient) -> Tenant:
    return signup(client, name="Other Org")


def create(client: TestClient, tenant: Tenant, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST and insist on 201; returns the created object."""
    response = client.post(path, json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_customer(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Renter")
    return create(client, tenant, "/v1/customers", body)


def make_plan(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("code", f"plan-{uuid.uuid4().hex[:8]}")
    body.setdefault("name", "Room")
    body.setdefault("currency", "eur")
    body.setdefault("interval", "month")
    body.setdefault("amount", 60000)
    return create(client, tenant, "/v1/plans", body)


def make_subscription(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    if "customer" not in body:
        body["customer"] = make_customer(client, tenant)["id"]
    if "plan" not in body:
        body["plan"] = make_plan(client, tenant)["id"]
    return create(client, tenant, "/v1/subscriptions", body)
