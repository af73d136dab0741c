"""Every table's model imported once, so metadata is complete (migrations, schema tests)."""

from __future__ import annotations

from kassa.core.idempotency import IdempotencyRecord
from kassa.db.base import Base
from kassa.identity.models import ApiKey, Membership, RefreshToken, SigningKey, User
from kassa.orgs.models import Organization

metadata = Base.metadata

__all__ = [
    "ApiKey",
    "IdempotencyRecord",
    "Membership",
    "Organization",
    "RefreshToken",
    "SigningKey",
    "User",
    "metadata",
]
