"""Composition root of the parser service.

Each consumed batch is split by device over ``parser_workers`` threads, each with its own
sandbox (QuickJS runs without the GIL, and a runtime must stay on the thread that made it);
the event loop meanwhile keeps the consumer's heartbeats and the control tail going, even
while a parser spins up to its time limit. The outputs are produced in per-partition
batches and awaited before the offsets are committed.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
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

# Records per slice of a consumed batch (see handle in serve).
PIPELINE_SLICE = 250


class ParserThreads:
    """Worker threads, each owning one BatchWorker (and so one sandbox)."""

    def __init__(
        self,
        settings: ParserSettings,
        topics: records.TopicNames,
        guard: ParserGuard,
        watches: Watches,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.guard = guard
        self.watches = watches
        self.executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"parser-{n}")
            for n in range(settings.parser_workers)
        ]
        self.workers: list[BatchWorker] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.workers = list(
            await asyncio.gather(
                *(loop.run_in_executor(executor, self._new_worker) for executor in self.executors)
            )
        )

    def _new_worker(self) -> BatchWorker:
        sandbox = ParserSandbox(
            time_limit=self.settings.parser_time_limit,
            memory_limit=self.settings.parser_memory_limit,
        )
        return BatchWorker(Pipeline(sandbox), self.topics, self.guard, self.watches)

    async def process(self, work: list[Work]) -> list[Output]:
        loop = asyncio.get_running_loop()
        if len(self.workers) == 1:
            return await loop.run_in_executor(self.executors[0], self.workers[0].process, work)
        shares: list[list[Work]] = [[] for _ in self.workers]
        for item in work:
            shares[hash(item.device.id) % len(shares)].append(item)
        done = await asyncio.gather(
            *(
                loop.run_in_executor(executor, worker.process, share)
                for executor, worker, share in zip(
                    self.executors, self.workers, shares, strict=True
                )
                if share
            )
        )
        return [out for outputs in done for out in outputs]

    def stop(self) -> None:
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
    threads = ParserThreads(settings, topics, guard, watches)
    await threads.start()

    def on_control(event: dict[str, Any]) -> None:
        kind, device = event.get("type"), str(event.get("device") or "")
        if kind in (config.DEVICE_CHANGED, config.DEVICE_DELETED) and device:
            guard.lift(device)  # a new parser deserves a fresh start
        else:
            watches.apply(event)  # successful runs of watched devices are reported

    store.listeners.append(on_control)

    async def handle(batch: list[Record]) -> None:
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
        # In slices, so the outputs of one are produced while the threads run parsers on the
        # next; everything is sent and acknowledged before the batch is committed.
        sending: asyncio.Future[None] | None = None
        try:
            for start in range(0, len(work), PIPELINE_SLICE):
                processing = asyncio.ensure_future(
                    threads.process(work[start : start + PIPELINE_SLICE])
                )
                try:
                    if sending is not None:
                        await sending
                finally:
                    outputs = await processing  # the threads finish whatever happens
                sending = asyncio.ensure_future(output.send(outputs))
            if sending is not None:
                await sending
        finally:
            if sending is not None and not sending.done():
                sending.cancel()

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
        threads.stop()
        if health:
            await health.stop()
        await engine.dispose()
