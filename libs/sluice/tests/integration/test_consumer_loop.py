"""The consumer loop against the real broker: batches in flight, commits in order, and a
failure that rewinds every partition to its first record not committed."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from sluice import bus, records
from sluice.bus import Record
from sluice.settings import SluiceSettings

RECORDS = 600
KEYS = 12


async def produce(settings: SluiceSettings, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(RECORDS):
            await producer.send(topic, b"%d" % n, key=b"key-%d" % (n % KEYS))
        await producer.flush()
    finally:
        await producer.stop()


def loop_for(settings: SluiceSettings, topic: str, group: str, handler: bus.BatchHandler) -> Any:
    consumer = bus.make_group_consumer(settings, [topic], group)
    return bus.ConsumerLoop(
        consumer, [topic], handler, name="test", max_records=50, poll_ms=100, in_flight=3
    )


async def committed(settings: SluiceSettings, topic: str, group: str) -> int:
    consumer = bus.make_group_consumer(settings, [], group)
    await consumer.start()
    try:
        total = 0
        for partition in range(4):
            total += await consumer.committed(TopicPartition(topic, partition)) or 0
        return total
    finally:
        await consumer.stop()


async def run_until(loop: bus.ConsumerLoop, stop: asyncio.Event, done: asyncio.Event) -> None:
    await loop.start(stop)
    runner = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(done.wait(), 60)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
        await loop.stop()


async def test_batches_in_flight_are_handled_in_order_and_committed(
    settings: SluiceSettings,
) -> None:
    topic = records.TopicNames(settings.topic_prefix).ingest
    group = f"loop-{uuid.uuid4().hex[:8]}"
    await produce(settings, topic)
    seen: dict[bytes, list[int]] = defaultdict(list)
    overlapping = 0
    running = 0
    done = asyncio.Event()

    async def handler(batch: list[Record]) -> None:
        nonlocal running, overlapping
        for record in batch:  # handlers start in consumption order
            assert record.key is not None
            seen[record.key].append(int(record.value or b""))
        running += 1
        overlapping = max(overlapping, running)
        await asyncio.sleep(0.02)  # finishing out of order must not matter
        running -= 1
        if sum(len(v) for v in seen.values()) >= RECORDS:
            done.set()

    stop = asyncio.Event()
    await run_until(loop_for(settings, topic, group, handler), stop, done)
    assert overlapping > 1  # batches really were in flight together
    assert sorted(n for values in seen.values() for n in values) == list(range(RECORDS))
    for values in seen.values():
        assert values == sorted(values)  # each key in order
    assert await committed(settings, topic, group) == RECORDS  # everything, once stopped


async def test_a_failed_batch_rewinds_what_was_in_flight(settings: SluiceSettings) -> None:
    topic = records.TopicNames(settings.topic_prefix).ingest
    group = f"loop-{uuid.uuid4().hex[:8]}"
    await produce(settings, topic)
    handled: list[int] = []
    poisoned = set(range(300, 420))  # batches holding these fail, three times
    failures = 0
    done = asyncio.Event()

    async def handler(batch: list[Record]) -> None:
        nonlocal failures
        values = [int(record.value or b"") for record in batch]
        await asyncio.sleep(0.01)
        if failures < 3 and poisoned.intersection(values):
            failures += 1
            poisoned.difference_update(values)
            raise RuntimeError("downstream is down")
        handled.extend(values)

    loop = loop_for(settings, topic, group, handler)

    async def all_committed() -> None:
        # (Not "all handled": a batch handled beside a failed one is handled again later.)
        while loop.processed < RECORDS:  # noqa: ASYNC110 (a counter, no event to wait on)
            await asyncio.sleep(0.02)
        done.set()

    watcher = asyncio.create_task(all_committed())
    stop = asyncio.Event()
    await run_until(loop, stop, done)
    watcher.cancel()
    assert failures == 3
    assert set(handled) == set(range(RECORDS))  # nothing skipped
    # What was in flight with the failed batch came again (at least once, never lost).
    assert len(handled) >= RECORDS
    assert await committed(settings, topic, group) == RECORDS
