"""Kafka producer/consumer helpers: at-least-once loops, tails, topic creation.

The consumer loop processes a batch, then commits per partition. A batch that fails
is rewound and retried with backoff, so an outage downstream (database, webhook host)
delays work but never skips it; handlers dead-letter records that can never succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from sluice import metrics, records
from sluice.settings import SluiceSettings

log = logging.getLogger("sluice.bus")

Record: TypeAlias = ConsumerRecord[bytes, bytes]
BatchHandler = Callable[[list[Record]], Awaitable[None]]

FAST_GROUP_TIMEOUTS: dict[str, int] = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 300,
    "rebalance_timeout_ms": 2000,
}


def bootstrap(settings: SluiceSettings) -> str:
    if not settings.kafka_bootstrap:
        raise RuntimeError(
            "SLUICE_KAFKA_BOOTSTRAP is not set: run the service under `sluice run` "
            "(embedded broker) or point it at a Kafka cluster"
        )
    return settings.kafka_bootstrap


def make_producer(settings: SluiceSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that only reports success once every in-sync replica has the record."""
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings),
        "acks": "all",
        "linger_ms": settings.kafka_linger_ms,
        "enable_idempotence": settings.kafka_idempotence,
        "max_batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "request_timeout_ms": 30_000,
        "client_id": f"sluice-{settings.node_id}",
    }
    config.update(overrides)
    return AIOKafkaProducer(**config)


def make_group_consumer(
    settings: SluiceSettings, topics: Iterable[str], group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 1000,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "client_id": f"sluice-{settings.node_id}",
    }
    if settings.kafka_fast_groups:
        config.update(FAST_GROUP_TIMEOUTS)
    config.update(overrides)
    return AIOKafkaConsumer(*topics, **config)


async def start_with_retry(
    client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient,
    what: str,
    stop: asyncio.Event | None = None,
    max_delay: float = 10.0,
) -> None:
    """Start a Kafka client, waiting for the broker if it is not up yet."""
    delay = 0.2
    while True:
        try:
            await client.start()
            return
        except KafkaError as exc:
            if stop is not None and stop.is_set():
                raise
            log.warning("kafka not reachable for %s (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


async def ensure_topics(settings: SluiceSettings, names: records.TopicNames) -> None:
    """Create Sluice's topics if missing (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(settings))
    await start_with_retry(admin, "topic creation")
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for short in records.ALL_TOPICS:
            full = names.prefix + short
            if full in existing:
                continue
            partitions = (
                1 if short in records.SINGLE_PARTITION_TOPICS else settings.topic_partitions
            )
            config = {"cleanup.policy": "compact"} if short in records.COMPACTED_TOPICS else {}
            replication = settings.topic_replication
            if replication >= 3:
                # acks=all then means "on at least two replicas" even with one broker down.
                config["min.insync.replicas"] = str(replication - 1)
            wanted.append(NewTopic(full, partitions, replication, topic_configs=config))
        if wanted:
            await admin.create_topics(wanted)
            log.info("created topics %s", ", ".join(t.name for t in wanted))
    finally:
        await admin.close()


async def dead_letter(
    producer: AIOKafkaProducer,
    topics: records.TopicNames,
    record: Record,
    service: str,
    reason: str,
) -> None:
    """Park a record that can never succeed, with the reason; its partition moves on."""
    headers = [
        *record.headers,
        ("dead_service", service.encode()),
        ("dead_reason", reason.encode()[:2000]),
        ("dead_topic", record.topic.encode()),
        ("dead_offset", str(record.offset).encode()),
    ]
    await producer.send_and_wait(topics.dead_letter, record.value, key=record.key, headers=headers)
    metrics.dead_letters.labels(service, reason.split(":", 1)[0][:40]).inc()
    log.warning(
        "dead-lettered record",
        extra={
            "service": service,
            "topic": record.topic,
            "offset": record.offset,
            "reason": reason,
        },
    )


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Let the batch in flight finish and commit before another member takes over.
        await self._loop.idle.wait()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._loop.assigned = set(assigned)
        self._loop.joined = True
        log.info("%s assigned %d partitions", self._loop.name, len(assigned))


@dataclass(slots=True)
class _Flight:
    """A batch being handled: what it holds per partition, and the handler's task."""

    batch: dict[TopicPartition, list[Record]]
    task: asyncio.Future[None]
    started: float


class ConsumerLoop:
    """Consume a group's topics: process a batch, then commit per partition.

    With ``in_flight`` above 1 the next batches are fetched and handed to the handler while
    earlier ones are still being handled (a handler must then keep each key's records in
    order across batches itself); batches are committed in order, each once its handler
    returned. When one fails, the batches after it are awaited too, and every partition is
    rewound to its first record not committed.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: list[str],
        handler: BatchHandler,
        *,
        name: str,
        max_records: int = 1000,
        poll_ms: int = 200,
        in_flight: int = 1,
    ) -> None:
        self.consumer = consumer
        self.topics = topics
        self.handler = handler
        self.name = name
        self.max_records = max_records
        self.poll_ms = poll_ms
        self.in_flight = max(1, in_flight)
        self.idle = asyncio.Event()
        self.idle.set()
        self.assigned: set[TopicPartition] = set()
        self.joined = False
        self.lag: dict[TopicPartition, int] = {}
        self.processed = 0
        self.last_batch_at = 0.0
        self._flights: deque[_Flight] = deque()

    async def start(self, stop: asyncio.Event | None = None) -> None:
        self.consumer.subscribe(self.topics, listener=_DrainOnRevoke(self))
        await start_with_retry(self.consumer, self.name, stop)

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; the batches in flight are finished and committed first."""
        delay = 0.1
        flights = self._flights
        try:
            while not stop.is_set():
                # Never wait for new records while a batch is in flight: finish it instead.
                batch = await self.consumer.getmany(
                    timeout_ms=0 if flights else self.poll_ms, max_records=self.max_records
                )
                if batch:
                    flat = [rec for recs in batch.values() for rec in recs]
                    self.idle.clear()
                    task = asyncio.ensure_future(self.handler(flat))
                    flights.append(_Flight(batch, task, time.monotonic()))
                while flights and (
                    not batch or flights[0].task.done() or len(flights) >= self.in_flight
                ):
                    if await self._settle_oldest(delay):
                        delay = 0.1
                        continue
                    await _sleep_or_stop(stop, delay)
                    delay = min(delay * 2, 30.0)
                    break
            while flights:  # stopping: finish what was started
                if not await self._settle_oldest(delay):
                    break
        finally:
            for flight in flights:
                flight.task.cancel()
            flights.clear()
            self.idle.set()

    async def _settle_oldest(self, delay: float) -> bool:
        """Wait for the oldest batch and commit it; False when it failed (then every batch
        in flight is over and the partitions are rewound)."""
        flights = self._flights
        flight = flights[0]
        try:
            await flight.task
        except asyncio.CancelledError:
            raise
        except Exception:
            records_in_flight = sum(len(recs) for f in flights for recs in f.batch.values())
            metrics.batch_failures.labels(self.name).inc()
            log.exception(
                "%s: batch of %d failed; retrying in %.1fs (%d records in flight)",
                self.name,
                sum(len(recs) for recs in flight.batch.values()),
                delay,
                records_in_flight,
            )
            first: dict[TopicPartition, int] = {}
            for later in flights:
                with contextlib.suppress(Exception):
                    await later.task
                for tp, recs in later.batch.items():
                    first.setdefault(tp, recs[0].offset)
            flights.clear()
            for tp, offset in first.items():
                self.consumer.seek(tp, offset)
            self.idle.set()
            return False
        flights.popleft()
        batch = flight.batch
        await self._commit({tp: recs[-1].offset + 1 for tp, recs in batch.items()})
        self.processed += sum(len(recs) for recs in batch.values())
        self.last_batch_at = time.monotonic()
        metrics.batch_seconds.labels(self.name).observe(self.last_batch_at - flight.started)
        for tp, recs in batch.items():
            metrics.records_consumed.labels(self.name, tp.topic).inc(len(recs))
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                self.lag[tp] = highwater - recs[-1].offset - 1
        for topic in {tp.topic for tp in batch}:
            total = sum(lag for tp, lag in self.lag.items() if tp.topic == topic)
            metrics.consumer_lag.labels(self.name, topic).set(total)
        if not flights:
            self.idle.set()
        return True

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another member, which will redo this work;
            # downstream effects are idempotent.
            log.warning("%s: commit skipped after rebalance (%s)", self.name, exc)

    async def stop(self) -> None:
        await self.consumer.stop()


async def _sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        pass


class Tail:
    """Read every partition of some topics without a group, from now or from the start.

    Tansu may answer an end-offset query with the start of the last stored batch, so a
    tail that starts "from now" drops records older than its start time.
    """

    def __init__(
        self,
        settings: SluiceSettings,
        topics: list[str],
        *,
        from_beginning: bool = False,
        skew_ms: int = 1000,
    ) -> None:
        self.topics = topics
        self.from_beginning = from_beginning
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            client_id=f"sluice-{settings.node_id}-tail",
        )
        self.not_before = 0 if from_beginning else records.now_ms() - skew_ms

    async def start(self, stop: asyncio.Event | None = None) -> None:
        await start_with_retry(self.consumer, "tail " + ",".join(self.topics), stop)
        partitions: list[TopicPartition] = []
        for topic in self.topics:
            found = self.consumer.partitions_for_topic(topic)
            while not found:
                await asyncio.sleep(0.1)
                await self.consumer.topics()  # refreshes cluster metadata
                found = self.consumer.partitions_for_topic(topic)
            partitions.extend(TopicPartition(topic, p) for p in sorted(found))
        self.consumer.assign(partitions)
        if self.from_beginning:
            await self.consumer.seek_to_beginning(*partitions)
        else:
            await self.consumer.seek_to_end(*partitions)

    async def end_offsets(self) -> dict[TopicPartition, int]:
        result: dict[TopicPartition, int] = await self.consumer.end_offsets(
            list(self.consumer.assignment())
        )
        return result

    async def batches(self, stop: asyncio.Event, poll_ms: int = 100) -> Any:
        """Yield lists of records as they arrive, until ``stop`` is set."""
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=poll_ms, max_records=2000)
            if not batch:
                continue
            not_before = self.not_before  # may move: a paused partition resumes "from now"
            out = [rec for recs in batch.values() for rec in recs if rec.timestamp >= not_before]
            if out:
                yield out

    async def stop(self) -> None:
        await self.consumer.stop()
