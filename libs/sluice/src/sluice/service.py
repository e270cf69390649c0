"""Pieces every consumer service assembles in its composition root."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.bus import ConsumerLoop
from sluice.health import HealthServer
from sluice.settings import SluiceSettings

log = logging.getLogger("sluice.service")


def database_check(engine: AsyncEngine) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return None

    return check


def consumer_check(loop: ConsumerLoop) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        return None if loop.joined else "consumer has not joined its group yet"

    return check


async def start_health(
    settings: SluiceSettings, checks: dict[str, Callable[[], Awaitable[str | None]]]
) -> HealthServer | None:
    if settings.health_port is None:
        return None
    server = HealthServer(settings.health_host, settings.health_port, checks)
    await server.start()
    return server


async def run_until_stopped(stop: asyncio.Event, *tasks: Awaitable[None]) -> None:
    """Run the service's loops; if one fails, stop the others and re-raise."""
    running = [asyncio.ensure_future(t) for t in tasks]
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait([*running, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("service loop failed", exc_info=task.exception())
                stop.set()
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
    finally:
        stopper.cancel()
        for task in running:
            task.cancel()
