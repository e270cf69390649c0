"""Publishes to Kafka in per-partition batches: one Kafka future per batch, not per message.

A client's QoS 1/2 publish is acknowledged from the batch callback, i.e. only after Kafka
acknowledged the record with acks=all. A failed batch is retried (never dropped); while
too much waits on Kafka the node stops reading sockets (``on_pressure(True)``).

Order: a device's records share a partition, and each partition has at most one batch
handed to the producer at a time; the next goes once it is acknowledged, and a batch that
failed goes again before anything after it. (With more than one batch of a partition in
the producer, one that expires while Kafka is away would be retried after later ones that
Kafka took when it came back.) What waits meanwhile becomes the next, larger, batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

log = logging.getLogger("sluice.gateway.uplink")

Done = Callable[[], None] | None
Entry = tuple[bytes, bytes | None, Sequence[tuple[str, bytes]], Done]


class UplinkProducer:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        max_pending: int,
        on_pressure: Callable[[bool], None] = lambda paused: None,
        retry_delay: float = 1.0,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.max_pending = max_pending
        self.on_pressure = on_pressure
        self.retry_delay = retry_delay
        self.pending = 0
        self.paused = False
        self.sent = 0
        self.failed_batches = 0
        self._queue: list[Entry] = []
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._partitions: list[int] = []
        self._by_key: dict[bytes, int] = {}
        # partition -> its records not yet handed to the producer, in order
        self._lanes: dict[int, list[Entry]] = {}
        # partitions with a batch in the producer, or one waiting to be retried
        self._busy: set[int] = set()

    def submit(
        self, key: bytes, value: bytes | None, headers: Sequence[tuple[str, bytes]], done: Done
    ) -> None:
        """Queue one record; ``done()`` runs once Kafka has it (never, if it never does)."""
        self._queue.append((key, value, headers, done))
        self.pending += 1
        self._drained.clear()
        self._wakeup.set()
        if self.pending >= self.max_pending and not self.paused:
            self.paused = True
            log.warning("%d publishes wait for Kafka: pausing socket reads", self.pending)
            self.on_pressure(True)

    def _partition(self, key: bytes) -> int:
        partition = self._by_key.get(key)
        if partition is None:
            partition = self._partitions[(murmur2(key) & 0x7FFFFFFF) % len(self._partitions)]
            if len(self._by_key) > 100_000:
                self._by_key.clear()
            self._by_key[key] = partition
        return partition

    async def run(self, stop: asyncio.Event) -> None:
        """Send what is queued until ``stop`` is set; then everything waiting is handed to
        the producer at once (in order, without waiting for acknowledgements) and it returns."""
        self._partitions = sorted(await self.producer.partitions_for(self.topic))
        lanes, busy = self._lanes, self._busy
        while True:
            self._wakeup.clear()
            if self._queue:
                entries, self._queue = self._queue, []
                for entry in entries:
                    partition = self._partition(entry[0])
                    lane = lanes.get(partition)
                    if lane is None:
                        lanes[partition] = [entry]
                    else:
                        lane.append(entry)
            if stop.is_set():
                for partition, lane in list(lanes.items()):
                    while lane:
                        await self._send_next(partition, lane)
                return
            for partition, lane in list(lanes.items()):
                if lane and partition not in busy:
                    await self._send_next(partition, lane)
            if self._queue:
                continue
            waiter = asyncio.ensure_future(self._wakeup.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def _send_next(self, partition: int, lane: list[Entry]) -> None:
        # One batch of the lane's first records (as many as fit) to the producer.
        members: list[Entry] = []
        while lane and not members:
            batch = self.producer.create_batch()
            for entry in lane:
                appended = batch.append(
                    key=entry[0], value=entry[1], timestamp=None, headers=entry[2]
                )
                if appended is not None:
                    members.append(entry)
                else:
                    break
            if not members:  # the first is larger than a whole batch
                entry = lane.pop(0)
                log.error(
                    "record too large for a Kafka batch; refused",
                    extra={"size": len(entry[1] or b"")},
                )
                self._settle(1)
        if not members:
            return
        del lane[: len(members)]
        self._busy.add(partition)
        try:
            future = await self.producer.send_batch(batch, self.topic, partition=partition)
        except KafkaError as exc:
            # Kafka away for longer than a request timeout: the producer has no metadata for
            # the topic, or the partition's queue never drained. The records wait and go
            # again; this loop must outlive any outage, or nothing is acknowledged after it.
            self._retry(partition, members, exc)
            return
        future.add_done_callback(lambda f: self._batch_done(f, partition, members))

    def _batch_done(
        self, future: asyncio.Future[Any], partition: int, members: list[Entry]
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            self._retry(partition, members, None if future.cancelled() else future.exception())
            return
        self.sent += len(members)
        for _key, _value, _headers, done in members:
            if done is not None:
                done()
        self._busy.discard(partition)
        self._wakeup.set()
        self._settle(len(members))

    def _retry(self, partition: int, members: list[Entry], exc: BaseException | None) -> None:
        # The partition stays busy until its records go again, first in its lane.
        self.failed_batches += 1
        log.warning("Kafka did not take %d publishes (%s); retrying", len(members), exc)
        asyncio.get_running_loop().call_later(self.retry_delay, self._requeue, partition, members)

    def _requeue(self, partition: int, members: list[Entry]) -> None:
        lane = self._lanes.setdefault(partition, [])
        lane[:0] = members
        self._busy.discard(partition)
        self._wakeup.set()

    def _settle(self, count: int) -> None:
        self.pending -= count
        if self.pending == 0:
            self._drained.set()
        if self.paused and self.pending <= self.max_pending // 2:
            self.paused = False
            log.info("Kafka caught up: resuming socket reads")
            self.on_pressure(False)

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing waits on Kafka (or the timeout); True when drained."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True
