"""Settings, read from ``KASSA_*`` environment variables (and a ``.env`` file if present)."""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KASSA_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="Owner connection (runs migrations). Empty: embedded PostgreSQL in data_dir.",
    )
    app_database_url: str | None = Field(
        default=None,
        description="Application-role connection. Empty: database_url with the app role's name.",
    )
    app_db_role: str = Field(default="kassa_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    app_db_password: SecretStr | None = None
    db_pool_size: int = Field(default=10, ge=1, le=200)
    data_dir: Path = Path(".kassa")
    documents_dir: Path | None = Field(
        default=None,
        description="Where rendered PDFs are stored (once each). Empty: data_dir/documents.",
    )
    redis_url: str | None = None
    secret_key: SecretStr | None = Field(
        default=None, description="Encrypts signing keys at rest. Empty: generated into data_dir."
    )
    signup_enabled: bool = True
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    signing_key_rotation_days: int = Field(default=30, ge=1)
    rate_limit_api: str = "100/second"
    rate_limit_public: str = "30/minute"
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=900, ge=1)
    login_ip_max_failures: str = "50/15 minutes"
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    usage_max_future_skew_seconds: int = Field(default=300, ge=0, le=86_400)
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0)
    purge_cron: str = "*/10 * * * *"
    forwarded_allow_ips: str = "127.0.0.1"
    smtp_url: SecretStr | None = Field(
        default=None,
        description="smtp://user:pass@host:587?starttls=true or smtps://…; empty: data_dir/outbox",
    )
    mail_from: str = Field(default="Kassa <kassa@localhost>", max_length=320)
    public_url: str = Field(
        default="http://localhost:8000",
        description="Base URL of links in e-mails (invitations, verification, password reset)",
    )
    invitation_ttl_hours: int = Field(default=72, ge=1, le=24 * 30)
    email_verification_ttl_hours: int = Field(default=72, ge=1, le=24 * 30)
    password_reset_ttl_minutes: int = Field(default=60, ge=5, le=24 * 60)
    mail_per_address_limit: str = "5/hour"
    # billing safety (docs/billing-safety.md)
    max_backdate_days: int = Field(default=366, ge=0, le=3660)
    max_future_start_days: int = Field(default=1827, ge=0, le=36_600)
    max_catchup_periods_per_step: int = Field(default=24, ge=1, le=10_000)
    max_clock_advance_transitions: int = Field(default=2000, ge=1, le=1_000_000)
    max_plan_migration_per_request: int = Field(default=500, ge=1, le=100_000)
    billing_retry_base_seconds: int = Field(default=300, ge=1)
    billing_retry_max_seconds: int = Field(default=86_400, ge=1)
    # Limits that keep one organization (or one client) from stalling the others: see
    # docs/limits.md. Timeouts are PostgreSQL's statement_timeout and lock_timeout.
    request_statement_timeout_ms: int = Field(default=5_000, ge=100, le=3_600_000)
    request_lock_timeout_ms: int = Field(default=2_000, ge=10, le=3_600_000)
    request_pool_timeout_ms: int = Field(
        default=2_000,
        ge=10,
        le=120_000,
        description="How long a request waits for a database connection before a 503.",
    )
    job_statement_timeout_ms: int = Field(default=120_000, ge=100, le=86_400_000)
    job_lock_timeout_ms: int = Field(default=30_000, ge=10, le=86_400_000)
    org_max_concurrent_requests: int | None = Field(
        default=None,
        ge=1,
        description="Database connections one organization's requests may hold at once "
        "(per process). Empty: half the pool size (db_pool_size / 2, at least 1).",
    )
    org_queue_timeout_ms: int = Field(default=1_500, ge=0, le=60_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    max_bulk_body_bytes: int = Field(
        default=20_971_520,
        ge=1_024,
        description="Body limit of /v1/events/batch and the CSV imports.",
    )

    @property
    def org_connection_share(self) -> int:
        return self.org_max_concurrent_requests or max(1, self.db_pool_size // 2)

    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics requires `Authorization: Bearer <this token>`.",
    )
    metrics_address: str | None = Field(
        default=None,
        pattern=r"^\[?[0-9A-Za-z.:-]+\]?:[0-9]{1,5}$",
        description="host:port of a separate /metrics listener (kassa serve); the API's own "
        "/metrics then answers 404.",
    )

    @property
    def documents_path(self) -> Path:
        return self.documents_dir or self.data_dir / "documents"

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @cached_property
    def secret(self) -> bytes:
        """The secret key, generated once into ``data_dir/secret_key`` when not configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
