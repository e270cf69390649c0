"""UplinkProducer against a producer whose send_batch raises, as aiokafka's does when Kafka
stays away past a request timeout (KafkaTimeoutError: the partition's queue never drained;
UnknownTopicOrPartitionError: no metadata for the topic). A fake producer: the real one
only raises there under timing a test cannot arrange reliably."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

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
