"""Outbound e-mail: one protocol, ``Mailer.send(message)``, and its adapters.

- ``OutboxMailer`` (the default): logs each message and writes it as an ``.eml`` file to
  ``KASSA_DATA_DIR/outbox/``, so an offline installation (and the demo) still "sends" mail.
- ``SmtpMailer``: a real SMTP server, from ``KASSA_SMTP_URL``.

Callers never send inside a transaction: ``Postman.send_after_commit`` hands a message to
a background thread once the transaction that produced it has committed (a rolled-back
request sends nothing), so a request never waits for a mail server either.
"""

from __future__ import annotations

from kassa.integrations.email.message import Mailer, Message
from kassa.integrations.email.outbox import OutboxMailer
from kassa.integrations.email.postman import Postman
from kassa.integrations.email.smtp import SmtpMailer, build_mailer

__all__ = ["Mailer", "Message", "OutboxMailer", "Postman", "SmtpMailer", "build_mailer"]
