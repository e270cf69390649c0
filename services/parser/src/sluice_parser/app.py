"""Composition root of the parser service.

Each consumed batch is split by device over ``parser_workers`` threads, each with its own
sandbox (QuickJS runs without the GIL, and a runtime must stay on the thread that made it);
the event loop meanwhile keeps the consumer's heartbeats and the control tail going, even
while a parser spins up to its time limit. Each thread works through its whole share in
chunks and hands every chunk's outputs to the event loop, which gives them to the producer
(in per-partition batches) while the threads go on; all of them are acknowledged before the
offsets are committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sluice import bus, config, records
from sluice.batching import BatchProducer, Output
from sluice.bus import Record
from sluice.config import ConfigStore, DeviceInfo, follow_control
from sluice.db import create_engine, session_factory
from sluice.inspector import Watches
from sluice.service import consumer_check, database_check, run_until_stopped, start_health
from sluice_parser.guard import ParserGuard
from sluice_parser.pipeline import Pipeline
from sluice_parser.sandbox import ParserSandbox
from sluice_parser.settings import ParserSettings
from sluice_parser.worker import BatchWorker, Work

log = logging.getLogger("sluice.parser")

# Records a parser thread works through before it hands their outputs over; records per
# consumed batch, and batches handled at once (the next is fetched and dispatched while the
# last chunks of one are parsed, produced and acknowledged, so the threads never wait).
CHUNK_RECORDS = 128
BATCH_RECORDS = 2000
BATCHES_IN_FLIGHT = 2
# Devices whose thread is remembered; past this, new devices go to a thread by their hash
# until no batch is in flight, when the table starts again.
DEVICES_REMEMBERED = 100_000


@dataclass(eq=False)
class _Run:
    """A consumed batch on its way through the threads."""

    handed: asyncio.Future[None]  # every thread handed over its share, and all was submitted
    jobs: list[asyncio.Future[None]] = field(default_factory=list)
    running: int = 0  # threads still working on their share
    required: list[asyncio.Future[Any]] = field(default_factory=list)  # acknowledgements
    error: Exception | None = None  # a submit failed


class DevicePlacement:
    """Which thread parses a device's records.

    A device keeps its thread, so its records are parsed and produced in order. A device not
    seen before goes to the thread with the least recent work among its partition's devices
    (the records of the batch being placed, and half of the load before it), then among all:
    a consumed batch often holds one partition only, so each partition's devices must be
    spread over the threads, and a few busy devices, or a hash that happens to favour one
    thread, cannot leave a thread idle.
    """

    def __init__(self, threads: int, remembered: int = DEVICES_REMEMBERED) -> None:
        self.threads = threads
        self.remembered = remembered
        self._thread_of: dict[str, int] = {}  # device id -> index of its thread
        self._load = [0.0] * threads
        self._partition_load: dict[int, list[float]] = {}  # the same, per partition

    def shares(self, work: list[Work]) -> list[list[Work]]:
        """Each thread's records of a batch, in the batch's order for each device."""
        threads = range(self.threads)
        shares: list[list[Work]] = [[] for _ in threads]
        thread_of = self._thread_of
        # partition -> records per thread: this batch's, and half of those before it
        batch: dict[int, list[float]] = {}

        def counts_of(partition: int) -> list[float]:
            counts = batch.get(partition)
            if counts is None:
                earlier = self._partition_load.get(partition, [0.0] * self.threads)
                counts = batch[partition] = [load / 2 for load in earlier]
            return counts

        new: list[Work] = []
        for item in work:
            index = thread_of.get(item.device.id)
            if index is None:
                new.append(item)
            else:
                shares[index].append(item)
                counts_of(item.record.partition)[index] += 1
        total = [load / 2 + len(share) for load, share in zip(self._load, shares, strict=True)]
        if new:
            # The new devices are placed the busiest first, each with all its records of
            # the batch, then their records are added in the batch's order.
            found: dict[str, tuple[int, int]] = {}  # device -> (records, partition)
            for item in new:
                seen = found.get(item.device.id)
                found[item.device.id] = (seen[0] + 1 if seen else 1, item.record.partition)
            placed: dict[str, int] = {}
            for device, (size, partition) in sorted(found.items(), key=lambda e: -e[1][0]):
                counts = counts_of(partition)
                if len(thread_of) < self.remembered:
                    index = thread_of[device] = min(threads, key=lambda n: (counts[n], total[n]))
                else:  # the table is full until the threads are idle: a stable choice
                    index = hash(device) % self.threads
                placed[device] = index
                counts[index] += size
                total[index] += size
            for item in new:
                shares[placed[item.device.id]].append(item)
        self._partition_load.update(batch)
        self._load = total
        return shares

    def idle(self) -> None:
        """No records are in flight: a full table may start again."""
        if len(self._thread_of) >= self.remembered:
            self._thread_of.clear()


class ParserThreads:
    """Worker threads, each owning one BatchWorker (and so one sandbox), and the task that
    gives their outputs to the producer in the order they come."""

    def __init__(
        self,
        settings: ParserSettings,
        topics: records.TopicNames,
        guard: ParserGuard,
        watches: Watches,
        output: BatchProducer,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.guard = guard
        self.watches = watches
        self.output = output
        self.executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"parser-{n}")
            for n in range(settings.parser_workers)
        ]
        self.workers: list[BatchWorker] = []
        self._placement = DevicePlacement(settings.parser_workers)
        self._runs = 0  # dispatched and not finished
        self._arrived: asyncio.Queue[tuple[_Run, list[Output] | None]] = asyncio.Queue()
        self._submitter: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.workers = list(
            await asyncio.gather(
                *(loop.run_in_executor(executor, self._new_worker) for executor in self.executors)
            )
        )
        self._submitter = asyncio.create_task(self._submit_in_order())

    def _new_worker(self) -> BatchWorker:
        sandbox = ParserSandbox(
            time_limit=self.settings.parser_time_limit,
            memory_limit=self.settings.parser_memory_limit,
        )
        return BatchWorker(Pipeline(sandbox), self.topics, self.guard, self.watches)

    def dispatch(self, work: list[Work]) -> _Run:
        """Hand records to the threads: a device's always to the same thread, which works
        through its shares in the order they were dispatched."""
        loop = asyncio.get_running_loop()
        run = _Run(loop.create_future())

        def hand_over(outputs: list[Output] | None) -> None:
            loop.call_soon_threadsafe(self._arrived.put_nowait, (run, outputs))

        shares = self._placement.shares(work)
        self._runs += 1
        run.jobs = [
            loop.run_in_executor(executor, _work_through, worker, share, hand_over)
            for executor, worker, share in zip(self.executors, self.workers, shares, strict=True)
            if share
        ]
        run.running = len(run.jobs)
        if not run.running:
            run.handed.set_result(None)
        return run

    async def finish(self, run: _Run) -> None:
        """Returns once every output of the run is produced and acknowledged; raises what
        failed (a thread, a submit, an acknowledgement)."""
        try:
            await asyncio.shield(run.handed)
            await asyncio.gather(*run.jobs)
            if run.error is not None:
                raise run.error
            await asyncio.gather(*run.required)
        finally:
            self._runs -= 1
            if not self._runs:
                self._placement.idle()

    async def _submit_in_order(self) -> None:
        while True:
            run, outputs = await self._arrived.get()
            if outputs is None:
                run.running -= 1
                if not run.running:
                    run.handed.set_result(None)
            elif run.error is None:
                try:
                    run.required.extend(await self.output.submit(outputs))
                except Exception as exc:  # the run fails; its threads still finish
                    run.error = exc

    def stop(self) -> None:
        if self._submitter is not None:
            self._submitter.cancel()
        for worker, executor in zip(self.workers, self.executors, strict=True):
            executor.submit(worker.pipeline.sandbox.close)
        for executor in self.executors:
            executor.shutdown(wait=True)


async def serve(settings: ParserSettings, stop: asyncio.Event) -> None:
    topics = records.TopicNames(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    store = ConfigStore(session_factory(engine), settings.control_cache_ttl)
    producer = bus.make_producer(settings)
    await bus.start_with_retry(producer, "parser producer", stop)
    output = BatchProducer(producer, "parser")
    guard = ParserGuard(settings.parser_suspend_seconds, settings.parser_suspend_max)
    watches = Watches()
    threads = ParserThreads(settings, topics, guard, watches, output)
    await threads.start()

    def on_control(event: dict[str, Any]) -> None:
        kind, device = event.get("type"), str(event.get("device") or "")
        if kind in (config.DEVICE_CHANGED, config.DEVICE_DELETED) and device:
            guard.lift(device)  # a new parser deserves a fresh start
        else:
            watches.apply(event)  # successful runs of watched devices are reported

    store.listeners.append(on_control)

    # Batches are dispatched in the order they were consumed (a device lookup may wait).
    dispatching = asyncio.Lock()

    async def handle(batch: list[Record]) -> None:
        async with dispatching:
            run = threads.dispatch(await prepare(batch))
        await threads.finish(run)

    async def prepare(batch: list[Record]) -> list[Work]:
        devices: dict[str, DeviceInfo | None] = {}
        work: list[Work] = []
        for record in batch:
            device_id = (records.header(record.headers, "device") or b"").decode()
            if device_id not in devices:
                devices[device_id] = await store.device(device_id)
            device = devices[device_id]
            if device is None:
                log.info(
                    "dropping data of a deleted device",
                    extra={
                        "device": device_id,
                        "message_id": (
                            records.header(record.headers, "message_id") or b""
                        ).decode(),
                    },
                )
                continue
            work.append(Work(record, device))
        return work

    consumer = bus.make_group_consumer(settings, [topics.ingest], settings.parser_group)
    loop = bus.ConsumerLoop(
        consumer,
        [topics.ingest],
        handle,
        name="parser",
        max_records=BATCH_RECORDS,
        in_flight=BATCHES_IN_FLIGHT,
    )
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
        threads.stop()
        if health:
            await health.stop()
        await engine.dispose()


def _work_through(
    worker: BatchWorker, share: list[Work], hand_over: Callable[[list[Output] | None], None]
) -> None:
    # On a parser thread: the share in chunks, each chunk's outputs handed over at once;
    # None (always) says the share is done.
    try:
        for start in range(0, len(share), CHUNK_RECORDS):
            hand_over(worker.process(share[start : start + CHUNK_RECORDS]))
    finally:
        hand_over(None)
