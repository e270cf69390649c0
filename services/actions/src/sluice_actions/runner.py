"""Runs the jobs on ``sluice.action-jobs``: due-time scheduling, bounded concurrency, retries.

Each job record is held in memory until its due time, then attempted. Its offset is
committed only once the job is finished: succeeded, given up (fallback device or dead
letter), or followed by the record of its next attempt, acknowledged by Kafka. So a crash
loses nothing; it can repeat attempts whose outcome was not yet recorded (at-least-once).

A dead host cannot hold up anything else: every action has its own small share of the
concurrency, waits between attempts are timers rather than blocked partitions, and the
topic is paused (not dropped) when too many jobs are held in memory.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from sluice import bus, records
from sluice.bus import Record
from sluice.inspector import Inspector
from sluice_actions import metrics
from sluice_actions.effects import AttemptResult
from sluice_actions.jobs import Job, retry_delay
from sluice_actions.settings import ActionsSettings

log = logging.getLogger("sluice.actions.jobs")

DONE = 1 << 30  # "finished attempt" of a job that succeeded or was given up
REMEMBER_FINISHED = 50_000
COMMIT_EVERY = 0.5
REVOKE_WAIT = 5.0


class JobExecutor(Protocol):
    async def wanted(self, job: Job) -> bool: ...

    async def attempt(self, job: Job) -> AttemptResult: ...

    async def give_up(self, job: Job, result: AttemptResult, record: Record) -> str: ...


@dataclass(eq=False, slots=True)
class _Entry:
    job: Job
    tp: TopicPartition
    offset: int
    record: Record
    started: bool = False
    cancelled: bool = False
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Partition:
    pending: dict[int, _Entry] = field(default_factory=dict)
    fetched: int = -1  # offset after the last record read
    committed: int = -1

    def position(self) -> int:
        """Where a restart must begin: the oldest unfinished job, or after the last read."""
        return min(self.pending) if self.pending else self.fetched


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.runner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.runner.joined = True
        log.info("action jobs: assigned %d partitions", len(assigned))


class JobRunner:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        topics: records.TopicNames,
        executor: JobExecutor,
        inspector: Inspector,
        settings: ActionsSettings,
        origin: str,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.topics = topics
        self.executor = executor
        self.inspector = inspector
        self.origin = origin
        self.max_attempts = settings.action_attempts
        self.retry_base = settings.action_retry_base
        self.retry_cap = settings.action_retry_max_delay
        self.per_action = settings.action_concurrency_per_action
        self.max_pending = settings.action_max_pending
        self.drain_timeout = max(settings.action_http_timeout, settings.action_smtp_timeout) + 2
        self.slots = asyncio.Semaphore(settings.action_concurrency)
        self.parts: dict[TopicPartition, _Partition] = {}
        self.heap: list[tuple[int, int, _Entry]] = []
        self.by_id: dict[str, _Entry] = {}
        self.finished: OrderedDict[str, int] = OrderedDict()
        self.waiting: dict[str, deque[_Entry]] = {}
        self.running: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.seq = itertools.count()
        self.pending = 0
        self.paused = False
        self.stopping = False
        self.joined = False

    async def start(self, stop: asyncio.Event | None = None) -> None:
        self.consumer.subscribe([self.topics.action_jobs], listener=_Listener(self))
        await bus.start_with_retry(self.consumer, "action jobs", stop)

    async def run(self, stop: asyncio.Event) -> None:
        helpers = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._commit_loop())]
        try:
            await self._fetch(stop)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self._drain()

    async def stop(self) -> None:
        await self.consumer.stop()

    # reading
    async def _fetch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._pause_or_resume()
            batch = await self.consumer.getmany(timeout_ms=200, max_records=500)
            for tp, recs in batch.items():
                part = self.parts.setdefault(tp, _Partition())
                for record in recs:
                    part.fetched = record.offset + 1
                    await self._admit(tp, part, record)
            if batch:
                metrics.jobs_pending.set(self.pending)
                self.wake.set()

    async def _admit(self, tp: TopicPartition, part: _Partition, record: Record) -> None:
        try:
            job = Job.from_value(record.value)
        except ValueError as exc:
            try:
                await bus.dead_letter(self.producer, self.topics, record, "actions", str(exc))
            except KafkaError:
                log.warning("unreadable job record dropped", extra={"offset": record.offset})
            return
        if job.attempt <= self.finished.get(job.id, 0):
            return  # done here already (a replayed copy)
        current = self.by_id.get(job.id)
        if current is not None:
            if job.attempt <= current.job.attempt:
                return  # a copy of work already scheduled
            if not current.started:
                self._forget(current)  # superseded by the record of a later attempt
        entry = _Entry(job, tp, record.offset, record)
        part.pending[record.offset] = entry
        self.pending += 1
        self.by_id[job.id] = entry
        heapq.heappush(self.heap, (job.due_ms, next(self.seq), entry))

    def _pause_or_resume(self) -> None:
        if not self.paused and self.pending >= self.max_pending:
            self.consumer.pause(*self.consumer.assignment())
            self.paused = True
            log.warning("action jobs: %d held in memory, pausing the job topic", self.pending)
        elif self.paused and self.pending <= self.max_pending // 2:
            self.consumer.resume(*self.consumer.paused())
            self.paused = False

    # scheduling
    async def _dispatch(self) -> None:
        while True:
            now = records.now_ms()
            while self.heap and self.heap[0][0] <= now:
                entry = heapq.heappop(self.heap)[2]
                if not entry.cancelled:
                    self._ready(entry)
            wait = (self.heap[0][0] - now) / 1000 if self.heap else 1.0
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), min(max(wait, 0.001), 1.0))
            except TimeoutError:
                pass

    def _ready(self, entry: _Entry) -> None:
        action = entry.job.action
        if self.running.get(action, 0) < self.per_action:
            self._launch(entry)
        else:
            self.waiting.setdefault(action, deque()).append(entry)

    def _launch(self, entry: _Entry) -> None:
        action = entry.job.action
        self.running[action] = self.running.get(action, 0) + 1
        task = entry.task = asyncio.create_task(self._run_one(entry))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_one(self, entry: _Entry) -> None:
        action = entry.job.action
        try:
            async with self.slots:
                if entry.cancelled or self.stopping:
                    return
                if entry.tp not in self.parts:
                    return  # the partition went to another member
                entry.started = True
                metrics.jobs_running.inc()
                try:
                    await self._attempt(entry)
                finally:
                    metrics.jobs_running.dec()
        finally:
            self.running[action] -= 1
            if not self.running[action]:
                del self.running[action]
            queue = self.waiting.get(action)
            while queue:
                nxt = queue.popleft()
                if not nxt.cancelled:
                    self._launch(nxt)
                    break
            if queue is not None and not queue:
                self.waiting.pop(action, None)

    # one attempt and what follows it
    async def _attempt(self, entry: _Entry) -> None:
        job = entry.job
        try:
            wanted = await self.executor.wanted(job)
        except Exception:  # the config could not be read: attempt it rather than stall
            log.warning("action job: config unavailable", extra={"job": job.id}, exc_info=True)
            wanted = True
        if not wanted:
            await self._report(job, "cancelled", reason="the action was deleted or deactivated")
            self._finish(entry, DONE)
            return
        started = time.monotonic()
        try:
            result = await self.executor.attempt(job)
        except Exception as exc:  # a bug must not lose the job: count it as a failed attempt
            log.exception("action job attempt crashed", extra={"job": job.id, "action": job.action})
            result = AttemptResult(False, f"internal error: {type(exc).__name__}: {exc}")
        metrics.attempt_seconds.labels(job.kind).observe(time.monotonic() - started)
        delay = 1.0
        while True:
            try:
                await self._settle(entry, result)
                return
            except Exception as exc:
                # The outcome could not be recorded (Kafka down): keep the job unfinished
                # (its offset stays uncommitted) and try again, unless the process is stopping.
                log.warning(
                    "action job outcome not recorded yet",
                    extra={"job": job.id, "action": job.action, "error": type(exc).__name__},
                )
                if self.stopping:
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _settle(self, entry: _Entry, result: AttemptResult) -> None:
        job = entry.job
        if result.ok:
            metrics.executions.labels(job.kind, "success").inc()
            await self._report(job, "success", status_code=result.status)
            self._finish(entry, DONE)
            return
        if result.retryable and job.attempt < self.max_attempts:
            delay = retry_delay(job.attempt, self.retry_base, self.retry_cap)
            follow = job.next_attempt(records.now_ms() + int(delay * 1000))
            await self.producer.send_and_wait(
                self.topics.action_jobs,
                follow.value(),
                key=follow.key(),
                headers=follow.headers(self.origin),
            )
            metrics.executions.labels(job.kind, "retry").inc()
            await self._report(job, "retry", error=result.error, retry_in=delay)
            log.info(
                "action attempt failed; retrying",
                extra={"job": job.id, "action": job.action, "attempt": job.attempt},
            )
            self._finish(entry, job.attempt)
            return
        outcome = await self.executor.give_up(job, result, entry.record)
        metrics.executions.labels(job.kind, "failed").inc()
        await self._report(job, "failed", error=result.error, outcome=outcome)
        log.warning(
            "action gave up",
            extra={
                "job": job.id,
                "action": job.action,
                "device": job.device,
                "attempts": job.attempt,
                "error": result.error,
                "outcome": outcome,
            },
        )
        self._finish(entry, DONE)

    async def _report(self, job: Job, status: str, **fields: object) -> None:
        await self.inspector.emit(
            job.account,
            job.device,
            "action",
            action=job.action,
            name=job.action_name,
            action_type=job.kind,
            status=status,
            attempt=job.attempt,
            job=job.id,
            message_id=job.source,
            **{k: v for k, v in fields.items() if v is not None},
        )

    def _finish(self, entry: _Entry, finished_attempt: int) -> None:
        job = entry.job
        part = self.parts.get(entry.tp)
        if part is not None and part.pending.pop(entry.offset, None) is not None:
            self.pending -= 1
        self.finished[job.id] = max(finished_attempt, self.finished.get(job.id, 0))
        self.finished.move_to_end(job.id)
        while len(self.finished) > REMEMBER_FINISHED:
            self.finished.popitem(last=False)
        if self.by_id.get(job.id) is entry:
            del self.by_id[job.id]

    def _forget(self, entry: _Entry) -> None:
        entry.cancelled = True
        part = self.parts.get(entry.tp)
        if part is not None and part.pending.pop(entry.offset, None) is not None:
            self.pending -= 1
        if self.by_id.get(entry.job.id) is entry:
            del self.by_id[entry.job.id]

    # offsets
    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(COMMIT_EVERY)
            metrics.jobs_pending.set(self.pending)
            await self._commit()

    async def _commit(self, only: list[TopicPartition] | None = None) -> None:
        offsets = {}
        for tp, part in self.parts.items():
            if only is not None and tp not in only:
                continue
            position = part.position()
            if position > part.committed and position >= 0:
                offsets[tp] = position
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.warning("action jobs: commit skipped (%s)", type(exc).__name__)
            return
        for tp, position in offsets.items():
            if tp in self.parts:
                self.parts[tp].committed = position

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        """Another member takes these partitions: finish calls in flight, commit, let go."""
        gone = [tp for tp in revoked if tp in self.parts]
        for tp in gone:
            for entry in self.parts[tp].pending.values():
                if not entry.started:
                    entry.cancelled = True
        in_flight = [
            entry.task
            for tp in gone
            for entry in self.parts[tp].pending.values()
            if entry.started and entry.task is not None and not entry.task.done()
        ]
        if in_flight:
            await asyncio.wait(in_flight, timeout=REVOKE_WAIT)
        await self._commit(gone)
        for tp in gone:
            part = self.parts.pop(tp)
            self.pending -= len(part.pending)
            for entry in part.pending.values():
                entry.cancelled = True
                if self.by_id.get(entry.job.id) is entry:
                    del self.by_id[entry.job.id]

    async def _drain(self) -> None:
        """On shutdown: start nothing new, let calls in progress end, commit what is done."""
        self.stopping = True
        for part in self.parts.values():
            for entry in part.pending.values():
                if not entry.started:
                    entry.cancelled = True
        running = [t for t in self.tasks if not t.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=self.drain_timeout)
            for task in late:
                task.cancel()
        await self._commit()
