"""Composition root of the parser service."""

from __future__ import annotations

import asyncio
import logging

from sluice import bus, records
from sluice.bus import Record
from sluice.config import ConfigStore, follow_control
from sluice.db import create_engine, session_factory
from sluice.inspector import Inspector
from sluice.service import consumer_check, database_check, run_until_stopped, start_health
from sluice_parser.pipeline import Pipeline
from sluice_parser.sandbox import ParserSandbox
from sluice_parser.settings import ParserSettings

log = logging.getLogger("sluice.parser")


async def serve(settings: ParserSettings, stop: asyncio.Event) -> None:
    topics = records.TopicNames(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    store = ConfigStore(session_factory(engine), settings.control_cache_ttl)
    producer = bus.make_producer(settings)
    await bus.start_with_retry(producer, "parser producer", stop)
    inspector = Inspector(producer, topics, "parser")
    sandbox = ParserSandbox(
        time_limit=settings.parser_time_limit, memory_limit=settings.parser_memory_limit
    )
    pipeline = Pipeline(sandbox)

    async def handle(batch: list[Record]) -> None:
        pending = []
        for record in batch:
            envelope = records.Envelope.from_headers(record.headers)
            device = await store.device(envelope.device)
            if device is None:
                log.info("dropping data of a deleted device", extra={"device": envelope.device})
                continue
            outcome = pipeline.process(envelope, record.value or b"", device)
            if outcome.parsed or outcome.error:
                await inspector.emit(
                    envelope.account,
                    envelope.device,
                    "parser",
                    message_id=envelope.message_id,
                    error=outcome.error,
                    stage=outcome.stage,
                    console=outcome.console,
                    output=outcome.items[:50] if not outcome.error else None,
                )
            if outcome.error:
                await bus.dead_letter(producer, topics, record, "parser", outcome.error)
                continue
            if outcome.items:
                pending.append(
                    await producer.send(
                        topics.data,
                        records.dumps(outcome.items),
                        key=record.key,
                        headers=list(record.headers),
                    )
                )
        if pending:
            await asyncio.gather(*pending)  # commit only what Kafka holds

    consumer = bus.make_group_consumer(settings, [topics.ingest], settings.parser_group)
    loop = bus.ConsumerLoop(consumer, [topics.ingest], handle, name="parser")
    control = bus.Tail(settings, [topics.control])
    health = await start_health(
        settings, {"database": database_check(engine), "kafka": consumer_check(loop)}
    )
    try:
        await control.start(stop)
        await loop.start(stop)
        await run_until_stopped(stop, loop.run(stop), follow_control(control, store, stop))
    finally:
        await loop.stop()
        await control.stop()
        await producer.stop()
        sandbox.close()
        if health:
            await health.stop()
        await engine.dispose()
