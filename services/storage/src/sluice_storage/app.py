"""Composition root of the storage service."""

from __future__ import annotations

import asyncio
import logging

from sluice import bus, records
from sluice.bus import Record
from sluice.config import ConfigStore, follow_control
from sluice.db import create_engine, session_factory
from sluice.inspector import Inspector
from sluice.service import consumer_check, database_check, run_until_stopped, start_health
from sluice_storage import metrics
from sluice_storage.retention import RetentionJob
from sluice_storage.settings import StorageSettings
from sluice_storage.stores import point_store
from sluice_storage.writer import BucketWriter, Rejection

log = logging.getLogger("sluice.storage")


async def serve(settings: StorageSettings, stop: asyncio.Event) -> None:
    topics = records.TopicNames(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    store = ConfigStore(session_factory(engine), settings.control_cache_ttl)
    writer = BucketWriter(point_store(engine), store.device)
    retention = RetentionJob(engine, batch=settings.retention_batch)
    producer = bus.make_producer(settings)
    await bus.start_with_retry(producer, "storage producer", stop)
    inspector = Inspector(producer, topics, "storage")

    async def refuse(rejection: Rejection) -> None:
        env = rejection.envelope
        metrics.points.labels("rejected").inc()
        await inspector.emit(
            env.account,
            env.device,
            "storage",
            message_id=env.message_id,
            error=rejection.reason,
            stage=rejection.stage,
        )
        await bus.dead_letter(producer, topics, rejection.record, "storage", rejection.reason)

    async def handle(batch: list[Record]) -> None:
        outcome = await writer.write_batch(batch)
        if outcome.dropped:
            metrics.points.labels("dropped").inc(outcome.dropped)
        if outcome.rejected:
            # Dead letters are durable before the loop commits the batch's offsets.
            await asyncio.gather(*(refuse(r) for r in outcome.rejected))

    consumer = bus.make_group_consumer(settings, [topics.data], settings.storage_group)
    loop = bus.ConsumerLoop(
        consumer, [topics.data], handle, name="storage", max_records=settings.storage_batch
    )
    control = bus.Tail(settings, [topics.control])
    health = await start_health(
        settings, {"database": database_check(engine), "kafka": consumer_check(loop)}
    )
    try:
        await control.start(stop)
        await loop.start(stop)
        await run_until_stopped(
            stop,
            loop.run(stop),
            follow_control(control, store, stop),
            retention.run(stop, settings.retention_interval, settings.retention_first_delay),
        )
    finally:
        await loop.stop()
        await control.stop()
        await producer.stop()
        if health:
            await health.stop()
        await engine.dispose()
