"""UplinkProducer against fake producers (the real one fails only under timing a test cannot
arrange reliably): one whose send_batch raises, as aiokafka's does when Kafka stays away past
a request timeout (KafkaTimeoutError: the partition's queue never drained;
UnknownTopicOrPartitionError: no metadata for the topic), and one whose batches fail after a
while, as batches that expire while Kafka is away do."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.partitioner import murmur2

from sluice_gateway.uplink import UplinkProducer


class Batch:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, *, key: bytes, value: bytes | None, timestamp: None, headers: Any) -> int:
        self.values.append(value)
        return 1


class FlakyProducer:
    """Raises from send_batch the given errors, one per call, then accepts."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.sent: list[bytes | None] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        if self.errors:
            raise self.errors.pop(0)
        self.sent += batch.values
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_the_loop_outlives_send_batch_errors_and_acknowledges_after() -> None:
    producer = FlakyProducer([KafkaTimeoutError(), UnknownTopicOrPartitionError()])
    uplink = UplinkProducer(producer, "t.uplink", max_pending=10, retry_delay=0.01)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.ensure_future(uplink.run(stop))
    acked: list[int] = []
    for n in range(3):
        uplink.submit(b"dev-1", b"%d" % n, [], lambda n=n: acked.append(n))
    assert await uplink.drain(5), f"{uplink.pending} publishes never acknowledged"
    assert not running.done()
    assert sorted(acked) == [0, 1, 2]
    assert sorted(producer.sent) == [b"0", b"1", b"2"]
    assert uplink.failed_batches == 2
    stop.set()
    await asyncio.wait_for(running, 5)


class SlowProducer:
    """Resolves each batch's future after `delay`; the first `failures` batches fail (as
    batches that expired while Kafka was away do). Records what went to which partition and
    how many batches of a partition were in the producer at once."""

    def __init__(self, failures: int, delay: float = 0.02) -> None:
        self.failures = failures
        self.delay = delay
        self.sent: dict[int, list[bytes | None]] = {0: [], 1: []}
        self.in_flight = {0: 0, 1: 0}
        self.most_in_flight = {0: 0, 1: 0}
        self.both_at_once = False

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1}

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.in_flight[partition] += 1
        self.most_in_flight[partition] = max(
            self.most_in_flight[partition], self.in_flight[partition]
        )
        self.both_at_once = self.both_at_once or all(self.in_flight.values())
        fail = self.failures > 0
        self.failures -= fail

        def resolve() -> None:
            self.in_flight[partition] -= 1
            if fail:
                future.set_exception(KafkaTimeoutError())
            else:
                self.sent[partition] += batch.values
                future.set_result(None)

        loop.call_later(self.delay, resolve)
        return future


def key_on(partition: int) -> bytes:
    """A device key the uplink puts on `partition` of two (murmur2, as Kafka's clients)."""
    return next(
        key for n in range(100) if (murmur2(key := b"dev-%d" % n) & 0x7FFFFFFF) % 2 == partition
    )


async def test_a_devices_publishes_reach_kafka_in_order_through_failed_batches() -> None:
    # Batches fail (Kafka away) while publishes keep arriving: the failed ones go again
    # before anything published after them, so each device's records keep their order.
    producer = SlowProducer(failures=6)
    uplink = UplinkProducer(producer, "t.uplink", max_pending=1000, retry_delay=0.05)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.ensure_future(uplink.run(stop))
    keys = [key_on(0), key_on(1)]
    acked: dict[bytes, list[bytes]] = {key: [] for key in keys}
    for n in range(60):
        for key in keys:
            value = b"%s-%03d" % (key, n)
            uplink.submit(key, value, [], lambda key=key, value=value: acked[key].append(value))
        await asyncio.sleep(0.005)
    assert await uplink.drain(10), f"{uplink.pending} publishes never acknowledged"
    assert uplink.failed_batches == 6
    for partition, key in enumerate(keys):
        published = [b"%s-%03d" % (key, n) for n in range(60)]
        assert producer.sent[partition] == published
        assert acked[key] == published
    assert producer.most_in_flight == {0: 1, 1: 1}  # one batch per partition at a time
    assert producer.both_at_once  # partitions do not wait for each other
    stop.set()
    await asyncio.wait_for(running, 5)


async def test_stop_hands_over_everything_waiting_in_order() -> None:
    producer = SlowProducer(failures=0, delay=0.05)
    uplink = UplinkProducer(producer, "t.uplink", max_pending=1000)  # type: ignore[arg-type]
    stop = asyncio.Event()
    running = asyncio.ensure_future(uplink.run(stop))
    key = key_on(1)
    uplink.submit(key, b"first", [], None)
    await asyncio.sleep(0.01)  # "first" is in the producer; the rest wait behind it
    for n in range(3):
        uplink.submit(key, b"then-%d" % n, [], None)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert await uplink.drain(5)
    assert producer.sent[1] == [b"first", b"then-0", b"then-1", b"then-2"]
