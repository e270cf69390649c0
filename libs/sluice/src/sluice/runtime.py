"""How every service process runs: logging, uvloop, SIGTERM → graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

import uvloop

from sluice.logs import configure_logging
from sluice.settings import SluiceSettings

log = logging.getLogger("sluice.runtime")

ServiceMain = Callable[[asyncio.Event], Awaitable[None]]


def run_service(name: str, settings: SluiceSettings, service_main: ServiceMain) -> None:
    """Run ``service_main(stop)`` until SIGTERM/SIGINT sets ``stop`` and it returns."""
    configure_logging(name, settings.log_level, settings.log_format)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service_main(stop)

    try:
        uvloop.run(_main())
    except KeyboardInterrupt:
        pass
    log.info("%s stopped", name)
