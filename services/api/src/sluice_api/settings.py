"""API settings."""

from __future__ import annotations

from sluice.settings import SluiceSettings


class ApiSettings(SluiceSettings):
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    max_data_body: int = 200 * 1024
    wait_timeout: float = 10.0
