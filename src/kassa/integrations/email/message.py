"""The message and the protocol every mail adapter implements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """A plain-text e-mail to one recipient."""

    to: str
    subject: str
    text: str

    def to_email(self, sender: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = self.to
        # A header is one line: names that reach a subject (an organization's) may hold line
        # breaks, which the email library refuses (it never lets them inject headers).
        msg["Subject"] = _LINE_BREAKS.sub(" ", self.subject)
        msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        msg.set_content(self.text)
        return msg


_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


class Mailer(Protocol):
    """Delivers one message now (blocking); raises on failure."""

    def send(self, message: Message) -> None: ...
