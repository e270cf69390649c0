"""Produce a consumer batch's output records in per-partition Kafka batches: one future per
Kafka batch instead of one per record.

Records keep their order within a partition (so per device). Required records (data, dead
letters, derived messages) are awaited, so the consumed offsets are committed only once
Kafka holds them; best-effort ones (Live Inspector events) are only counted when lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from sluice import metrics

log = logging.getLogger("sluice.batching")

PARTITIONS_TTL = 60.0  # seconds before the partition list of a topic is asked again


@dataclass(slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)  # a list: aiokafka wants one
    required: bool = True  # False: a lost record is only counted (inspector events)


@dataclass
class _Topic:
    partitions: list[int]
    fetched_at: float
    by_key: dict[bytes, int] = field(default_factory=dict)


class BatchProducer:
    def __init__(self, producer: AIOKafkaProducer, service: str) -> None:
        self.producer = producer
        self.service = service
        self.dropped = 0
        self._topics: dict[str, _Topic] = {}

    async def send(self, outputs: Sequence[Output]) -> None:
        """Produce every output; returns once Kafka acknowledged all the required ones."""
        required = await self.submit(outputs)
        if required:
            await asyncio.gather(*required)

    async def submit(self, outputs: Sequence[Output]) -> list[asyncio.Future[Any]]:
        """Hand every output to the producer, in order; returns the futures of the required
        ones, which the caller awaits before it commits what the outputs came from."""
        if not outputs:
            return []
        for name in {out.topic for out in outputs}:
            await self._refresh(name)
        groups: dict[tuple[str, int, bool], list[Output]] = {}
        for out in outputs:
            group = (out.topic, self._partition(out.topic, out.key), out.required)
            groups.setdefault(group, []).append(out)
        required: list[asyncio.Future[Any]] = []
        for (topic, partition, must), members in groups.items():
            futures = await self._send_partition(topic, partition, members)
            if must:
                required.extend(futures)
            else:
                for future in futures:
                    future.add_done_callback(self._best_effort_done)
            metrics.records_produced.labels(self.service, topic).inc(len(members))
        return required

    async def _refresh(self, topic: str) -> None:
        known = self._topics.get(topic)
        if known is not None and time.monotonic() - known.fetched_at < PARTITIONS_TTL:
            return
        partitions = sorted(await self.producer.partitions_for(topic))
        if known is not None and known.partitions == partitions:
            known.fetched_at = time.monotonic()
            return
        self._topics[topic] = _Topic(partitions, time.monotonic())

    def _partition(self, topic: str, key: bytes | None) -> int:
        # The producer's default partitioner (murmur2 of the key), so keyed records land
        # where any other producer of the same key would put them.
        known = self._topics[topic]
        if key is None:
            return random.choice(known.partitions)
        partition = known.by_key.get(key)
        if partition is None:
            partition = known.partitions[(murmur2(key) & 0x7FFFFFFF) % len(known.partitions)]
            if len(known.by_key) > 100_000:
                known.by_key.clear()
            known.by_key[key] = partition
        return partition

    async def _send_partition(
        self, topic: str, partition: int, members: list[Output]
    ) -> list[asyncio.Future[Any]]:
        futures: list[asyncio.Future[Any]] = []
        batch = self.producer.create_batch()
        count = 0
        for out in members:
            if batch.append(key=out.key, value=out.value, timestamp=None, headers=out.headers):
                count += 1
                continue
            if count:
                futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                batch, count = self.producer.create_batch(), 0
                if batch.append(key=out.key, value=out.value, timestamp=None, headers=out.headers):
                    count = 1
                    continue
            # Larger than a whole batch: the producer sends it on its own.
            futures.append(
                await self.producer.send(
                    topic, out.value, key=out.key, partition=partition, headers=out.headers
                )
            )
        if count:
            futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures

    def _best_effort_done(self, future: asyncio.Future[Any]) -> None:
        error = "cancelled" if future.cancelled() else future.exception()
        if error is not None:
            self.dropped += 1
            log.debug("best-effort records dropped", extra={"error": repr(error)})
