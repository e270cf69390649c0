"""Storage settings."""

from __future__ import annotations

from pydantic import Field

from sluice.settings import SluiceSettings


class StorageSettings(SluiceSettings):
    storage_group: str = "sluice-storage"
    storage_batch: int = Field(default=2000, description="Most records written per transaction")
    retention_interval: float = Field(
        default=300.0, description="Seconds between retention passes over immutable devices"
    )
    retention_first_delay: float = Field(
        default=30.0, description="Seconds after start-up before the first retention pass"
    )
    retention_batch: int = Field(default=5000, description="Data points deleted per transaction")
