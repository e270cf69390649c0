"""Composition root of the API: builds the context in the lifespan, mounts the routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI

from sluice import bus, records
from sluice.db import create_engine, session_factory
from sluice.limits import WindowCounter, connect_redis
from sluice_api.context import ApiContext
from sluice_api.errors import install_error_handlers
from sluice_api.inspector import INSPECTOR_WATCH, InspectorHub
from sluice_api.observability import RequestMetrics
from sluice_api.routes import (
    account_smtp,
    accounts,
    actions,
    buckets,
    data,
    device_params,
    device_services,
    devices,
    health,
    inspector,
    parser,
    plans,
    relays,
    tokens,
)
from sluice_api.settings import ApiSettings

log = logging.getLogger("sluice.api")

DESCRIPTION = """Manage accounts, plans, devices, tokens and actions, send or read device data,
and watch a device live.

Every response is an envelope: `{"status": true, "result": ...}` or
`{"status": false, "message": ...}`. Send tokens in the `Authorization` header
(`Bearer <token>`), or in `token`, `device-token` or `account-token`, or as `?token=`.
"""

# Order matters: FastAPI takes the first route that matches, so every router that declares
# a literal path under /device (`/device/token/...`, `/device/params`, `/device/{id}/...`)
# comes before `devices`, whose `/device/{device_id}` would otherwise swallow "token" or
# "params" as a device id. Keep `devices` last.
# Likewise `account_smtp` (`/account/smtp`) comes before `accounts` (`/account/{account_id}`).
ROUTERS = (
    health,
    account_smtp,
    accounts,
    plans,
    tokens,
    actions,
    relays,
    data,
    device_services,
    buckets,
    device_params,
    inspector,
    parser,
    devices,
)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        producer = bus.make_producer(settings)
        await bus.start_with_retry(producer, "api producer")
        topics = records.TopicNames(settings.topic_prefix)
        redis = connect_redis(settings.redis_url)
        ctx = ApiContext(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            producer=producer,
            topics=topics,
            limiter=WindowCounter(redis, prefix="sluice:api:"),
        )

        async def announce(device: str, until: int) -> None:
            await ctx.publish_control(INSPECTOR_WATCH, key=device, device=device, until=until)

        ctx.hub = InspectorHub(
            announce,
            history=settings.inspector_history,
            client_buffer=settings.inspector_client_buffer,
            watch_every=settings.inspector_watch_every,
        )
        app.state.ctx = ctx
        _end_streams_on_signal(ctx.hub)
        stop = asyncio.Event()
        background = [
            asyncio.create_task(_run_hub(ctx.hub, bus.Tail(settings, [topics.inspector]), stop)),
            asyncio.create_task(ctx.limiter.run(stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.gather(*background), 5)
            await producer.stop()
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    app = FastAPI(title="Sluice API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestMetrics, max_body=settings.max_request_body)
    for module in ROUTERS:
        app.include_router(module.router)
    return app


def _end_streams_on_signal(hub: InspectorHub) -> None:
    """Close Live Inspector streams as soon as SIGTERM/SIGINT arrives.

    uvicorn waits for open connections before it runs the lifespan's shutdown, and an
    SSE stream never ends by itself: without this a rolling restart would wait for the
    graceful-shutdown timeout. uvicorn's own handler is kept and still called; uvicorn
    restores the original handlers when it exits.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(hub.shutdown)
            previous(signum, frame)

        signal.signal(sig, handler)


async def _run_hub(hub: InspectorHub, tail: bus.Tail, stop: asyncio.Event) -> None:
    try:
        await hub.run(tail, stop)
    except Exception:
        if not stop.is_set():
            log.exception("live inspector stopped reading its topic")
