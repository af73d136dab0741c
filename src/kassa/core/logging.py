"""structlog configuration: JSON lines with request/org/user context, secrets redacted.

Redaction works twice: values under sensitive keys are replaced wholesale, and e-mail
addresses, phone numbers and bearer tokens inside any other string are masked, so a
personal detail that slips into a message still does not reach the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"
_SENSITIVE_KEY = re.compile(
    r"(^|_)(pass|password|passwd|secret|token|authorization|api_key|key|cookie|email|phone|"
    r"signature|credentials)$",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w/+])(\+\d[\d \-().]{6,}\d|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})(?![\w/])")
_SECRET_VALUE = re.compile(
    r"\b(sk_(?:test|live)_[A-Za-z0-9]+|rt_[A-Za-z0-9_-]{20,}|eyJ[\w-]+\.[\w-]+\.[\w-]*)"
)


def scrub_text(text: str) -> str:
    """Mask e-mails, phone numbers and credentials inside free text."""
    text = _SECRET_VALUE.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def _scrub(value: Any, key: str | None = None) -> Any:
    if key is not None and _SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact secrets and personal data from every event."""
    for key in list(event_dict):
        event_dict[key] = _scrub(event_dict[key], None if key == "event" else key)
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route stdlib and structlog output through one redacting JSON (or console) renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.format_exc_info,
        redact,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "pgserver", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "procrastinate"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
