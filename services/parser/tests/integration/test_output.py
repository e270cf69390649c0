"""Per-partition batch production against the real broker: keyed records land where the
producer's own partitioner puts them, in order, whatever their size."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sluice import bus, records
from sluice.batching import BatchProducer, Output
from sluice.settings import SluiceSettings


async def read_all(settings: SluiceSettings, topic: str, expected: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 2**20,
    )
    await consumer.start()
    try:
        found: list[Any] = []
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=200)
            found += [r for recs in batch.values() for r in recs]
            if len(found) >= expected:
                break
        return found
    finally:
        await consumer.stop()


async def test_outputs_keep_key_order_and_the_default_partitioning(
    settings: SluiceSettings,
) -> None:
    topics = records.TopicNames(settings.topic_prefix)
    producer = bus.make_producer(settings)
    plain = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    await plain.start()
    try:
        keys = [f"device-{n}".encode() for n in range(20)]
        outputs = [
            Output(topics.data, keys[n % 20], b"%d" % n, [("n", b"%d" % n)]) for n in range(400)
        ]
        big = b"x" * (300 * 1024)  # larger than one producer batch (256 kB)
        outputs.insert(7, Output(topics.data, keys[7], big, []))
        outputs.append(Output(topics.inspector, keys[0], b"event", required=False))
        await BatchProducer(producer, "test").send(outputs)
        # where the producer's own partitioner sends each key
        placed = {
            key: (await (await plain.send(topics.dead_letter, b"", key=key))).partition
            for key in keys
        }
    finally:
        await producer.stop()
        await plain.stop()

    got = await read_all(settings, topics.data, 401)
    assert len(got) == 401
    for key in keys:
        mine = [r for r in got if r.key == key]
        assert {r.partition for r in mine} == {placed[key]}
        expected = [o.value for o in outputs if o.key == key and o.topic == topics.data]
        assert [r.value for r in sorted(mine, key=lambda r: r.offset)] == expected
    assert dict(next(r for r in got if r.value == b"5").headers) == {"n": b"5"}
    assert [r.value for r in await read_all(settings, topics.inspector, 1)] == [b"event"]
