"""Storage settings."""

from __future__ import annotations

from sluice.settings import SluiceSettings


class StorageSettings(SluiceSettings):
    storage_group: str = "sluice-storage"
    storage_batch: int = 2000
