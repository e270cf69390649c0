"""Composition root of the storage service."""

from __future__ import annotations

import asyncio
import logging

from sluice import bus, records
from sluice.bus import Record
from sluice.db import create_engine, session_factory
from sluice.service import consumer_check, database_check, run_until_stopped, start_health
from sluice_storage.settings import StorageSettings
from sluice_storage.writer import BucketWriter

log = logging.getLogger("sluice.storage")


async def serve(settings: StorageSettings, stop: asyncio.Event) -> None:
    topics = records.TopicNames(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    writer = BucketWriter(session_factory(engine), engine.dialect.name)
    producer = bus.make_producer(settings)
    await bus.start_with_retry(producer, "storage producer", stop)

    async def handle(batch: list[Record]) -> None:
        for record, reason in await writer.write_batch(batch):
            await bus.dead_letter(producer, topics, record, "storage", reason)

    consumer = bus.make_group_consumer(settings, [topics.data], settings.storage_group)
    loop = bus.ConsumerLoop(
        consumer, [topics.data], handle, name="storage", max_records=settings.storage_batch
    )
    health = await start_health(
        settings, {"database": database_check(engine), "kafka": consumer_check(loop)}
    )
    try:
        await loop.start(stop)
        await run_until_stopped(stop, loop.run(stop))
    finally:
        await loop.stop()
        await producer.stop()
        if health:
            await health.stop()
        await engine.dispose()
