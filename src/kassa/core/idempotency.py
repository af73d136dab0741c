"""``Idempotency-Key`` semantics (API.md "Conventions").

The first request with a key takes a transaction-scoped advisory lock on (org, key) and
runs; its 2xx response is stored *in the same transaction* as its effects, so a crash
leaves neither or both. A repeat while the first runs cannot take the lock → 409
``idempotency_key_in_use``; a repeat after it committed replays the stored response; the
same key with a different request → 422 ``idempotency_key_reused``. Failed (non-2xx)
requests store nothing, so a client may fix its request and retry with the same key.

The key is claimed only after the caller was authenticated *and authorized* for the route,
and a stored response belongs to the principal (member user id or API key id) that made
the request: anyone else presenting the same key gets 409 ``idempotency_key_in_use`` and
never the stored body (which may hold a secret, such as a new API key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import LargeBinary, SmallInteger, String, delete, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from kassa.core.errors import Conflict, KassaError, ValidationFailed, field_error
from kassa.db.base import Base, TenantOwned

MAX_KEY_LENGTH = 255
REPLAYED_HEADERS = ("content-type", "location")


class IdempotencyRecord(TenantOwned, Base):
    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    principal: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[int] = mapped_column(SmallInteger)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class KeyInUse(Conflict):
    code = "idempotency_key_in_use"
    title = "A request with this Idempotency-Key is still being processed"


class KeyOfAnotherPrincipal(Conflict):
    code = "idempotency_key_in_use"
    title = "This Idempotency-Key was used by another member or API key"


class KeyReused(ValidationFailed):
    code = "idempotency_key_reused"
    title = "Idempotency-Key was already used for a different request"


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Replay(KassaError):
    """Raised to short-circuit a request whose response is already stored."""

    status = 200
    code = "idempotent_replay"

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__()
        self.stored = stored


@dataclass(frozen=True)
class PendingKey:
    org_id: str
    key: str
    fingerprint: str
    principal: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", path.encode(), b"\0", body):
        digest.update(part)
    return digest.hexdigest()


def claim(
    session: Session, org_id: str, principal: str, key: str, print_: str, now: datetime
) -> PendingKey:
    """Take the key for this transaction, or raise Replay / KeyInUse / KeyReused.
    ``principal`` is the authorized caller's id; only they get a stored response back."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise field_error("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    locked = session.execute(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"idem:{org_id}:{key}"},
    ).scalar_one()
    if not locked:
        raise KeyInUse(detail="Retry after the first request has finished.")
    row = session.scalars(
        select(IdempotencyRecord).where(
            IdempotencyRecord.org_id == org_id,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at > now,
        )
    ).one_or_none()
    if row is not None:
        if row.principal != principal:
            raise KeyOfAnotherPrincipal(detail="Use a key of your own for your requests.")
        if row.fingerprint != print_:
            raise KeyReused(
                detail="Use a new key for a different request.",
                errors=[],
            )
        raise Replay(StoredResponse(row.status, dict(row.headers), bytes(row.body)))
    return PendingKey(org_id, key, print_, principal)


def store(
    session: Session, pending: PendingKey, response: StoredResponse, now: datetime, ttl: timedelta
) -> None:
    """Record the response in the caller's transaction (replaces an expired record)."""
    values: dict[str, Any] = {
        "org_id": pending.org_id,
        "key": pending.key,
        "fingerprint": pending.fingerprint,
        "principal": pending.principal,
        "status": response.status,
        "headers": {k: v for k, v in response.headers.items() if k in REPLAYED_HEADERS},
        "body": response.body,
        "created_at": now,
        "expires_at": now + ttl,
    }
    stmt = insert(IdempotencyRecord).values(**values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["org_id", "key"],
            set_={k: stmt.excluded[k] for k in values if k not in ("org_id", "key")},
            where=IdempotencyRecord.expires_at <= now,
        )
    )


def purge_expired(session: Session, org_id: str, now: datetime) -> int:
    """Delete this org's expired records; returns how many."""
    result = session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.org_id == org_id, IdempotencyRecord.expires_at <= now
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
