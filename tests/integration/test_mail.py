"""The outbound mail seam: the outbox default, SMTP to a real server, sent only after the
transaction commits."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from kassa.app import create_app
from kassa.integrations.email import Message, OutboxMailer, Postman, SmtpMailer, build_mailer
from kassa.runtime import Runtime
from tests.conftest import PASSWORD, SmtpSink, mails_to, make_settings, token_in, unique_email


def test_the_default_mailer_writes_eml_files_to_the_outbox(tmp_path: Path) -> None:
    mailer = build_mailer(None, "Kassa <billing@example.com>", tmp_path)
    assert isinstance(mailer, OutboxMailer)
    mailer.send(Message(to="a@example.com", subject="Hello", text="Link: https://x/?token=ev_1\n"))
    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    found = mails_to(tmp_path / "outbox", "a@example.com")
    assert found[0]["From"] == "Kassa <billing@example.com>" and found[0]["Subject"] == "Hello"
    assert token_in(found[0], "ev_") == "ev_1"
    assert eml.stat().st_mode & 0o077 == 0  # tokens inside: owner-only


def test_a_subject_made_of_a_name_with_line_breaks_is_one_line(tmp_path: Path) -> None:
    """An organization named with a line break (the API stores it) made the invitation
    mail fail in the background: a header is one line, so the breaks become spaces."""
    mailer = build_mailer(None, "kassa@example.com", tmp_path)
    mailer.send(Message(to="c@example.com", subject="Invited to Acme\r\nBcc: x@evil", text="-"))
    [found] = mails_to(tmp_path / "outbox", "c@example.com")
    assert found["Subject"] == "Invited to Acme Bcc: x@evil"
    assert found["Bcc"] is None


def test_smtp_mailer_delivers_to_a_real_server(smtp: SmtpSink) -> None:
    mailer = build_mailer(smtp.url, "kassa@example.com", Path("/nonexistent"))
    assert isinstance(mailer, SmtpMailer) and not mailer.starttls
    mailer.send(Message(to="b@example.com", subject="Über", text="Grüße\n"))
    [received] = smtp.wait_for("b@example.com")
    assert received["Subject"] == "Über"
    body = received.get_body(("plain",))
    assert body is not None and body.get_content().strip() == "Grüße"


def test_smtp_url_forms() -> None:
    tls = SmtpMailer("smtps://u%40x:p%2Fw@mail.example.com", "k@example.com")
    assert (tls.implicit_tls, tls.port, tls.username, tls.password) == (
        True,
        465,
        "u@x",
        "p/w",
    )
    submission = SmtpMailer("smtp://mail.example.com:587?starttls=true", "k@example.com")
    assert submission.starttls and not submission.implicit_tls


def test_mail_leaves_only_after_commit(rt: Runtime, smtp: SmtpSink) -> None:
    postman = Postman(SmtpMailer(smtp.url, "kassa@example.com"))
    try:
        with rt.db.sessionmaker() as session:
            session.begin()
            session.execute(text("SELECT 1"))
            postman.send_after_commit(session, Message("rolled@example.com", "No", "no"))
            session.rollback()
            session.begin()
            session.execute(text("SELECT 1"))
            postman.send_after_commit(session, Message("committed@example.com", "Yes", "yes"))
            postman.drain()
            assert smtp.messages == []  # not before the commit
            session.commit()
        postman.drain()
        assert [m["To"] for m in smtp.messages] == ["committed@example.com"]
    finally:
        postman.close()


def test_a_failed_request_sends_no_mail(client: TestClient) -> None:
    email = unique_email("weak")
    response = client.post(
        "/v1/auth/signup", json={"org_name": "X", "email": email, "password": "short"}
    )
    assert response.status_code == 422
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    rt.postman.drain()
    assert mails_to(rt.settings.data_dir / "outbox", email) == []


def test_the_app_mails_through_smtp_when_configured(
    database_url: str, tmp_path: Path, smtp: SmtpSink
) -> None:
    rt = Runtime.build(make_settings(tmp_path, database_url, smtp_url=smtp.url))
    try:
        with TestClient(create_app(rt)) as client:
            email = unique_email("smtp")
            response = client.post(
                "/v1/auth/signup", json={"org_name": "S", "email": email, "password": PASSWORD}
            )
            assert response.status_code == 201
            [mail] = smtp.wait_for(email)
            assert token_in(mail, "ev_").startswith("ev_")
            assert not (tmp_path / "outbox").exists()
    finally:
        rt.close()
