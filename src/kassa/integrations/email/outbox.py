"""The default mailer: the log and ``.eml`` files in a directory (``data_dir/outbox``)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import structlog

from kassa.integrations.email.message import Message

log = structlog.get_logger("kassa.mail")


class OutboxMailer:
    def __init__(self, directory: Path, sender: str) -> None:
        self.directory = directory
        self.sender = sender

    def send(self, message: Message) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(bytes(message.to_email(self.sender)))
        tmp.chmod(0o600)  # the message carries one-time tokens
        tmp.rename(self.directory / name)  # readers never see half a file
        log.info("mail_written", to=message.to, subject=message.subject, file=name)
