"""Parser settings."""

from __future__ import annotations

from sluice.settings import SluiceSettings


class ParserSettings(SluiceSettings):
    parser_group: str = "sluice-parser"
    parser_time_limit: float = 1.0
    parser_memory_limit: int = 64 * 2**20
