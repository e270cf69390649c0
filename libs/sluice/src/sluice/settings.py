"""Typed settings shared by every service (environment prefix ``SLUICE_``)."""

from __future__ import annotations

import secrets
import socket
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def normalise_database_url(url: str) -> str:
    """Map the URLs people paste (``postgres://``, ``sqlite:///``) onto the async drivers."""
    url = url.strip()
    for prefix in (
        "postgres://",
        "postgresql://",
        "postgresql+psycopg2://",
        "postgresql+psycopg://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def default_node_id() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"


class SluiceSettings(BaseSettings):
    """Knobs every service honours. Service settings inherit from this class."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", env_file=".env", extra="ignore")

    admin_token: str | None = None
    database_url: str = "sqlite+aiosqlite:///./.sluice/sluice.db"
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset means the embedded Tansu broker"
    )
    kafka_idempotence: bool = Field(
        default=False, description="Idempotent producer: on for Apache Kafka, off for Tansu"
    )
    kafka_fast_groups: bool = Field(
        default=False,
        description="Short consumer-group timeouts (embedded broker and tests only)",
    )
    kafka_linger_ms: int = 2
    kafka_fetch_max_wait_ms: int = Field(
        default=25,
        description=(
            "Longest a fetch waits for data. Tansu always waits this long, so it bounds the "
            "latency of each pipeline hop; Apache Kafka answers as soon as data arrives"
        ),
    )
    topic_prefix: str = "sluice."
    topic_partitions: int = 8
    topic_replication: int = Field(
        default=1, ge=1, description="Replication factor of topics `sluice topics` creates"
    )
    node_id: str = Field(default_factory=default_node_id)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    health_host: str = "0.0.0.0"
    health_port: int | None = Field(
        default=None, description="Port of /healthz, /readyz and /metrics (no server when unset)"
    )
    workers: int = Field(
        default=1, description="Processes of this service (sluice <service> --workers)"
    )
    reuse_port: bool = Field(default=False, description="Bind listening ports with SO_REUSEPORT")
    redis_url: str | None = Field(
        default=None, description="Redis shared by all processes for plan-limit counters"
    )
    control_cache_ttl: float = Field(default=30.0, description="Seconds config stays cached")

    @field_validator("database_url")
    @classmethod
    def _normalise_db(cls, value: str) -> str:
        return normalise_database_url(value)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
