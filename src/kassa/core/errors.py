"""One error family for the whole service, rendered as RFC 9457 problem details.

Every error carries an HTTP status and a stable snake_case ``code``; contexts subclass
:class:`KassaError` (``class SubscriptionError(KassaError)``). 422 is for payload
validation only; conflicts of state are 409.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


@dataclass
class KassaError(Exception):
    """Base of every expected error. Subclasses set ``status``/``code``/``title``."""

    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __post_init__(self) -> None:
        super().__init__(self.detail or self.title)

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://kassa.dev/problems/{self.code.replace('_', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        body.update(self.extra)
        return body


class ValidationFailed(KassaError):
    status = 422
    code = "validation_error"
    title = "Invalid request"


class NotFound(KassaError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(KassaError):
    status = 409
    code = "conflict"
    title = "Conflict"


class AmountOutOfRange(Conflict):
    """A billing error, not a crash: what usage or fees come to cannot be billed (beyond
    what an invoice line or total may hold, or beyond exact decimal arithmetic). Billing
    runs record it on the subscription; requests answer it."""

    code = "amount_out_of_range"
    title = "An amount is beyond what an invoice can hold"


class Unauthorized(KassaError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(KassaError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class RateLimited(KassaError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


def field_error(field_name: str, message: str, code: str = "validation_error") -> ValidationFailed:
    """A 422 naming one field, with an optional more precise code."""
    err = ValidationFailed(
        detail=f"{field_name}: {message}", errors=[FieldError(field_name, message)]
    )
    if code != ValidationFailed.code:
        err.extra["code"] = code
    return err
