"""Composition root of the actions service."""

from __future__ import annotations

import asyncio
import logging

from sluice import bus, records
from sluice.bus import Record
from sluice.config import ConfigStore, follow_control
from sluice.db import create_engine, session_factory
from sluice.ids import derived_id
from sluice.inspector import Inspector
from sluice.service import consumer_check, database_check, run_until_stopped, start_health
from sluice_actions.settings import ActionsSettings
from sluice_actions.triggers import topic_actions

log = logging.getLogger("sluice.actions")


async def serve(settings: ActionsSettings, stop: asyncio.Event) -> None:
    topics = records.TopicNames(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    store = ConfigStore(session_factory(engine), settings.control_cache_ttl)
    producer = bus.make_producer(settings)
    await bus.start_with_retry(producer, "actions producer", stop)
    inspector = Inspector(producer, topics, "actions")

    async def handle_uplink(batch: list[Record]) -> None:
        pending = []
        for record in batch:
            envelope = records.Envelope.from_headers(record.headers)
            device = await store.device(envelope.device)
            if device is None:
                continue
            for action in topic_actions(
                await store.account_actions(envelope.account), device, envelope.topic
            ):
                if action.action.get("type") != "insert":
                    continue
                ingest = records.Envelope(
                    # Derived, so a replayed uplink record yields the same ingest message.
                    message_id=derived_id(envelope.message_id, action.id),
                    account=envelope.account,
                    device=envelope.device,
                    topic=envelope.topic,
                    qos=envelope.qos,
                    received_at=envelope.received_at,
                    origin=envelope.origin,
                    kind=records.KIND_MQTT,
                    extra={"action": action.id, "uplink_id": envelope.message_id},
                )
                pending.append(
                    await producer.send(
                        topics.ingest, record.value, key=record.key, headers=ingest.to_headers()
                    )
                )
                await inspector.emit(
                    envelope.account,
                    envelope.device,
                    "action",
                    action=action.id,
                    name=action.name,
                    action_type="insert",
                    message_id=envelope.message_id,
                )
        if pending:
            await asyncio.gather(*pending)

    consumer = bus.make_group_consumer(settings, [topics.uplink], settings.actions_group)
    loop = bus.ConsumerLoop(consumer, [topics.uplink], handle_uplink, name="actions")
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
        if health:
            await health.stop()
        await engine.dispose()
