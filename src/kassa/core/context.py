"""Who is acting, in which organization. Passed explicitly to every service call."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    STAFF = "staff"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a member (via JWT) or an organization API key."""

    org_id: str
    role: Role
    user_id: str | None = None
    api_key_id: str | None = None

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    @property
    def actor_id(self) -> str:
        """The id that rate limits and audit rows are keyed by."""
        return self.api_key_id or self.user_id or "anonymous"
