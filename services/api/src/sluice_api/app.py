"""Composition root of the API: builds the context in the lifespan, mounts the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sluice import bus, records
from sluice.db import create_engine, session_factory
from sluice_api.context import ApiContext
from sluice_api.errors import install_error_handlers
from sluice_api.routes import accounts, actions, data, devices, health, tokens
from sluice_api.settings import ApiSettings

DESCRIPTION = """Manage accounts, devices, tokens and actions, and send or read device data.

Every response is an envelope: `{"status": true, "result": ...}` or
`{"status": false, "message": ...}`. Send tokens in the `Authorization` header
(`Bearer <token>`), or in `token`, `device-token` or `account-token`, or as `?token=`.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        producer = bus.make_producer(settings)
        await bus.start_with_retry(producer, "api producer")
        app.state.ctx = ApiContext(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            producer=producer,
            topics=records.TopicNames(settings.topic_prefix),
        )
        try:
            yield
        finally:
            await producer.stop()
            await engine.dispose()

    app = FastAPI(title="Sluice API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    for module in (health, accounts, devices, tokens, actions, data):
        app.include_router(module.router)
    return app
