"""Sending after commit, off the request's path.

``send_after_commit(session, message)`` remembers the message on the SQLAlchemy session;
when that session's transaction commits, the messages go to a single background thread
that delivers them through the ``Mailer``. A rollback discards them. Delivery failures
are logged (and counted), never raised into a request that has already succeeded.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

from kassa.integrations.email.message import Mailer, Message

log = structlog.get_logger("kassa.mail")
_PENDING = "kassa_mail_after_commit"


class Postman:
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kassa-mail")
        self._lock = threading.Lock()
        self._inflight: set[Future[None]] = set()

    def send_after_commit(self, session: Session, message: Message) -> None:
        pending: list[tuple[Postman, Message]] = session.info.setdefault(_PENDING, [])
        pending.append((self, message))

    def submit(self, message: Message) -> None:
        """Deliver in the background now (the caller's transaction, if any, is done)."""
        future = self._executor.submit(self._deliver, message)
        with self._lock:
            self._inflight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._inflight.discard(future)

    def _deliver(self, message: Message) -> None:
        try:
            self.mailer.send(message)
        except Exception:
            log.exception("mail_failed", to=message.to, subject=message.subject)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every submitted message was handed to the mailer (tests, shutdown)."""
        with self._lock:
            futures = list(self._inflight)
        for future in futures:
            future.result(timeout=timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for postman, message in session.info.pop(_PENDING, []):
        postman.submit(message)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
