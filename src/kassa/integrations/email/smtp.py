"""SMTP delivery (stdlib ``smtplib``) configured by one URL, and the adapter choice.

``smtp://user:pass@host:587?starttls=true`` (STARTTLS, the default on port 587),
``smtp://host:25`` (plain), ``smtps://user:pass@host:465`` (implicit TLS). User and password
are URL-encoded. ``timeout=`` (seconds, default 30) bounds every network step.
"""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from kassa.integrations.email.message import Mailer, Message
from kassa.integrations.email.outbox import OutboxMailer

_TRUE = {"1", "true", "yes", "on"}


class SmtpMailer:
    def __init__(self, url: str, sender: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("KASSA_SMTP_URL must look like smtp://[user:pass@]host[:port]")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.implicit_tls else 587)
        default_starttls = "true" if (not self.implicit_tls and self.port == 587) else "false"
        self.starttls = query.get("starttls", default_starttls).lower() in _TRUE
        self.timeout = float(query.get("timeout", "30"))
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = sender

    def send(self, message: Message) -> None:
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.implicit_tls:
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.starttls:
                client.starttls(context=context)
            if self.username is not None:
                client.login(self.username, self.password or "")
            client.send_message(message.to_email(self.sender))


def build_mailer(smtp_url: str | None, sender: str, data_dir: Path) -> Mailer:
    """SMTP when a URL is configured, else the outbox directory."""
    if smtp_url:
        return SmtpMailer(smtp_url, sender)
    return OutboxMailer(data_dir / "outbox", sender)
