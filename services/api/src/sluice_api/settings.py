"""API settings."""

from __future__ import annotations

from pydantic import Field

from sluice.settings import SluiceSettings


class ApiSettings(SluiceSettings):
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    max_data_body: int = 200 * 1024
    wait_timeout: float = Field(
        default=30.0, description="Longest POST /data?wait=true waits for storage (504 after)"
    )
    max_request_body: int = Field(
        default=1024 * 1024, description="Largest request body of any route (413 beyond)"
    )
    inspector_history: int = Field(
        default=50, description="Events per device a new Live Inspector stream starts with"
    )
    inspector_client_buffer: int = Field(
        default=1000, description="Events queued per slow Live Inspector client before drops"
    )
    inspector_watch_every: float = Field(
        default=20.0, description="Seconds between inspector.watch announcements of a device"
    )
