"""What one parser thread does with its share of a consumed batch: run the pipeline on each
record and say what to produce (data, dead letters, Live Inspector events).

No Kafka I/O here: the service loop produces the outputs, in order, and commits after.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluice import metrics, records
from sluice.batching import Output
from sluice.bus import Record
from sluice.config import DeviceInfo
from sluice_parser.guard import ParserGuard, Suspension
from sluice_parser.metrics import parser_runs, parser_seconds
from sluice_parser.pipeline import Outcome, Pending, Pipeline
from sluice_parser.sandbox import BATCH_RUNS

log = logging.getLogger("sluice.parser")

INSPECTOR_OUTPUT_ITEMS = 50  # items of a parser's output shown in the Live Inspector
INSPECTOR_EVENT_BYTES = 64 * 1024  # past this the output is left out of the event


@dataclass(slots=True)
class Work:
    record: Record
    device: DeviceInfo


class BatchWorker:
    """Turns ingest records into output records; each instance lives on one thread."""

    def __init__(
        self,
        pipeline: Pipeline,
        topics: records.TopicNames,
        guard: ParserGuard,
        watching: Callable[[str], bool],
    ) -> None:
        self.pipeline = pipeline
        self.topics = topics
        self.guard = guard
        self.watching = watching
        self._runs = {
            outcome: parser_runs.labels(outcome)
            for outcome in (
                "ok",
                "error",
                "timeout",
                "memory",
                "internal",
                "too_large",
                "unknown_builtin",
                "invalid",
                "suspended",
            )
        }
        self._counted = dict.fromkeys(self._runs, 0)  # runs not yet added to _runs

    def process(self, work: list[Work]) -> list[Output]:
        try:
            return self._process(work)
        finally:
            for outcome, count in self._counted.items():
                if count:
                    self._runs[outcome].inc(count)
                    self._counted[outcome] = 0

    def _process(self, work: list[Work]) -> list[Output]:
        envelopes = [records.Envelope.from_headers(item.record.headers) for item in work]
        outcomes: list[Outcome | None] = [None] * len(work)
        waiting: deque[tuple[int, Pending]] = deque()
        now = time.monotonic()
        for index, item in enumerate(work):
            device = item.device
            suspension = self.guard.suspended(device.id, now) if device.payload_parser else None
            if suspension is not None:
                outcomes[index] = self._suspended(suspension, now)
                continue
            started = self.pipeline.start(envelopes[index], item.record.value or b"", device)
            if isinstance(started, Pending):
                waiting.append((index, started))
            elif started.parsed:  # the parser's code was refused before it could run
                outcomes[index] = self._observed(device, envelopes[index], started)
            else:
                outcomes[index] = started
        self._run_parsers(work, waiting, outcomes)
        out: list[Output] = []
        for item, envelope, outcome in zip(work, envelopes, outcomes, strict=True):
            assert outcome is not None
            self._emit(item.record, envelope, item.device, outcome, out)
        return out

    def _run_parsers(
        self, work: list[Work], waiting: deque[tuple[int, Pending]], outcomes: list[Outcome | None]
    ) -> None:
        # In order, a few runs per call into the sandbox; a device's suspension takes effect
        # from the message after the run that caused it, as if each ran alone.
        while waiting:
            now = time.monotonic()
            chunk: list[tuple[int, Pending]] = []
            while waiting and len(chunk) < BATCH_RUNS:
                index, pending = waiting.popleft()
                suspension = self.guard.suspended(work[index].device.id, now)
                if suspension is not None:
                    outcomes[index] = self._suspended(suspension, now)
                else:
                    chunk.append((index, pending))
            if not chunk:
                return
            runs = self.pipeline.sandbox.run_many([pending.request for _, pending in chunk])
            waiting.extendleft(reversed(chunk[len(runs) :]))
            for (index, pending), run in zip(chunk, runs, strict=False):
                outcomes[index] = self._observed(
                    work[index].device, pending.envelope, self.pipeline.finish(pending, run)
                )

    def _emit(
        self,
        record: Record,
        envelope: records.Envelope,
        device: DeviceInfo,
        outcome: Outcome,
        out: list[Output],
    ) -> None:
        if outcome.error is None:
            if outcome.data is not None:
                out.append(Output(self.topics.data, record.key, outcome.data, list(record.headers)))
            if outcome.parsed and (outcome.console or self.watching(device.id)):
                out.append(self._event(envelope, outcome))
            return
        out.append(self._dead_letter(record, outcome.error))
        metrics.dead_letters.labels("parser", outcome.outcome).inc()
        out.append(self._event(envelope, outcome))
        if outcome.outcome != "suspended":
            log.warning(
                "message not stored",
                extra={
                    "device": envelope.device,
                    "account": envelope.account,
                    "message_id": envelope.message_id,
                    "outcome": outcome.outcome,
                    "stage": outcome.stage,
                    "reason": outcome.error,
                },
            )

    def _suspended(self, suspension: Suspension, now: float) -> Outcome:
        self._counted["suspended"] += 1
        return Outcome(
            error=f"payload parser suspended for another {suspension.until - now:.0f} s "
            f"after it exceeded its limits ({suspension.reason}); save a fixed parser "
            "to lift the suspension",
            stage="parser",
            outcome="suspended",
        )

    def _observed(
        self, device: DeviceInfo, envelope: records.Envelope, outcome: Outcome
    ) -> Outcome:
        # Metrics and the guard's account of a parser run.
        self._counted[outcome.outcome] += 1
        parser_seconds.observe(outcome.duration_ms / 1000)
        if outcome.outcome == "ok" and not self.guard.suspending:
            return outcome
        reason = (outcome.error or "").removeprefix("payload parser: ")
        seconds = self.guard.observe(device.id, outcome.outcome, reason, time.monotonic())
        if seconds is not None:
            log.warning(
                "payload parser suspended",
                extra={
                    "device": device.id,
                    "account": device.account_id,
                    "message_id": envelope.message_id,
                    "seconds": seconds,
                    "reason": outcome.error,
                },
            )
        return outcome

    def _dead_letter(self, record: Record, reason: str) -> Output:
        # The same headers as sluice.bus.dead_letter, which sends one record at a time.
        headers = [
            *record.headers,
            ("dead_service", b"parser"),
            ("dead_reason", reason.encode()[:2000]),
            ("dead_topic", record.topic.encode()),
            ("dead_offset", str(record.offset).encode()),
        ]
        return Output(self.topics.dead_letter, record.key, record.value, headers)

    def _event(self, envelope: records.Envelope, outcome: Outcome) -> Output:
        output: Any = outcome.parser_output if outcome.parsed else None
        if isinstance(output, list) and len(output) > INSPECTOR_OUTPUT_ITEMS:
            output = output[:INSPECTOR_OUTPUT_ITEMS]
        event = {
            "type": "parser",
            "account": envelope.account,
            "device": envelope.device,
            "service": "parser",
            "at": records.now_ms(),
            "message_id": envelope.message_id,
            "outcome": outcome.outcome,
            "stage": outcome.stage or None,
            "error": outcome.error,
            "console": outcome.console,
            "output": output,
            "stored": outcome.stored,
            "duration_ms": round(outcome.duration_ms, 3),
        }
        value = records.dumps(event)
        if len(value) > INSPECTOR_EVENT_BYTES:
            event["output"] = None
            event["output_truncated"] = True
            value = records.dumps(event)
        return Output(self.topics.inspector, envelope.device.encode(), value, required=False)
