"""Alembic migrations, run programmatically (``sluice migrate``, ``sluice run``, tests)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

from sluice.db import create_engine
from sluice.logs import configure_logging

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(database_url: str, revision: str = "heads") -> None:
    """Apply migrations. Features add revisions on their own branches; ``heads`` takes all."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
    finally:
        await engine.dispose()


def main() -> int:
    from sluice_api.settings import ApiSettings

    settings = ApiSettings()
    configure_logging("migrate", settings.log_level, settings.log_format)
    asyncio.run(upgrade(settings.database_url))
    logging.getLogger("sluice.migrate").info("database is at the latest revision")
    return 0
