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
