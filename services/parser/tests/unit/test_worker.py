"""A parser thread's share of a batch: what it produces for good, failing and hostile parsers,
and how a parser that hits its limits is suspended (pure: no Kafka, a real sandbox)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from sluice import records
from sluice.batching import Output
from sluice.config import DeviceInfo
from sluice_parser.guard import ParserGuard
from sluice_parser.metrics import parser_runs
from sluice_parser.pipeline import Pipeline
from sluice_parser.sandbox import ParserSandbox
from sluice_parser.worker import BatchWorker, Work

TOPICS = records.TopicNames("t.")
GOOD = "payload = [{ variable: 'level', value: Buffer.from(payload[0].value, 'hex')[0] }];"


def device(device_id: str, parser: str | None) -> DeviceInfo:
    return DeviceInfo(
        id=device_id,
        account_id="acc",
        name=device_id,
        type="immutable",
        active=True,
        tags=(),
        params=(("payload_type", "hex", True),),
        payload_parser=parser,
        chunk_period="month",
        chunk_retention=12,
    )


def record(dev: DeviceInfo, offset: int, value: bytes = b"\x07") -> ConsumerRecord[bytes, bytes]:
    envelope = records.Envelope(
        message_id=f"msg-{dev.id}-{offset}",
        account="acc",
        device=dev.id,
        topic="sensors/x",
        kind=records.KIND_MQTT,
    )
    headers = tuple(envelope.to_headers())
    return ConsumerRecord(
        "t.ingest", 0, offset, 0, 0, dev.id.encode(), value, None, 0, len(value), headers
    )


class Watching:
    def __init__(self) -> None:
        self.devices: set[str] = set()

    def __call__(self, device: str) -> bool:
        return device in self.devices


@pytest.fixture
def sandbox() -> Iterator[ParserSandbox]:
    with ParserSandbox(time_limit=0.2, memory_limit=32 * 2**20) as box:
        yield box


def worker(sandbox: ParserSandbox, watching: Any = None, guard: Any = None) -> BatchWorker:
    return BatchWorker(
        Pipeline(sandbox), TOPICS, guard or ParserGuard(5.0, 60.0), watching or Watching()
    )


def by_topic(outputs: list[Output], topic: str) -> list[Output]:
    return [o for o in outputs if o.topic == topic]


def event(out: Output) -> Any:
    return orjson.loads(out.value or b"")


def test_good_records_become_data_with_the_envelope(sandbox: ParserSandbox) -> None:
    dev = device("d1", GOOD)
    outputs = worker(sandbox).process([Work(record(dev, 0), dev), Work(record(dev, 1), dev)])
    data = by_topic(outputs, TOPICS.data)
    assert [orjson.loads(o.value or b"")[0]["value"] for o in data] == [7, 7]
    assert all(o.key == b"d1" and o.required for o in data)
    assert dict(data[0].headers)["message_id"] == b"msg-d1-0"
    # nothing logged and nobody watching: no inspector traffic on the hot path
    assert by_topic(outputs, TOPICS.inspector) == []


def test_watched_device_or_console_output_is_shown_in_the_inspector(
    sandbox: ParserSandbox,
) -> None:
    watching = Watching()
    quiet, chatty = device("quiet", GOOD), device("chatty", "console.log('hi'); " + GOOD)
    w = worker(sandbox, watching)
    assert by_topic(w.process([Work(record(quiet, 0), quiet)]), TOPICS.inspector) == []
    watching.devices.add("quiet")
    outputs = w.process([Work(record(quiet, 1), quiet), Work(record(chatty, 0), chatty)])
    events = [event(o) for o in by_topic(outputs, TOPICS.inspector)]
    assert [(e["device"], e["type"], e["outcome"], e["console"]) for e in events] == [
        ("quiet", "parser", "ok", []),
        ("chatty", "parser", "ok", ["log: hi"]),
    ]
    assert events[0]["output"] == [{"variable": "level", "value": 7}]
    assert events[0]["stored"] == 1
    assert all(not o.required for o in by_topic(outputs, TOPICS.inspector))


def test_failure_dead_letters_the_record_and_shows_error_and_console(
    sandbox: ParserSandbox,
) -> None:
    dev = device("d1", "console.log('got', payload[0].value);\nthrow new Error('bad frame');")
    rec = record(dev, 42)
    outputs = worker(sandbox).process([Work(rec, dev)])
    assert by_topic(outputs, TOPICS.data) == []
    [dead] = by_topic(outputs, TOPICS.dead_letter)
    headers = dict(dead.headers)
    assert (dead.key, dead.value, dead.required) == (b"d1", b"\x07", True)
    assert headers["dead_reason"] == b"payload parser: Error: bad frame (line 2)"
    assert headers["dead_service"] == b"parser"
    assert (headers["dead_topic"], headers["dead_offset"]) == (b"t.ingest", b"42")
    assert headers["message_id"] == b"msg-d1-42"
    [shown] = [event(o) for o in by_topic(outputs, TOPICS.inspector)]
    assert shown["error"] == "payload parser: Error: bad frame (line 2)"
    assert shown["console"] == ["log: got 07"]
    assert (shown["stage"], shown["outcome"], shown["stored"]) == ("parser", "error", 0)


def test_invalid_output_is_dead_lettered_with_what_the_parser_produced(
    sandbox: ParserSandbox,
) -> None:
    dev = device("d1", "payload = [{ variable: 'has space', value: 1 }];")
    outputs = worker(sandbox).process([Work(record(dev, 0), dev)])
    [dead] = by_topic(outputs, TOPICS.dead_letter)
    assert b"item 0" in dict(dead.headers)["dead_reason"]
    [shown] = [event(o) for o in by_topic(outputs, TOPICS.inspector)]
    assert (shown["stage"], shown["outcome"]) == ("validation", "invalid")
    assert shown["output"] == [{"variable": "has space", "value": 1}]


def test_a_hostile_parser_is_suspended_and_other_devices_keep_flowing(
    sandbox: ParserSandbox,
) -> None:
    hostile, good = device("evil", "while (true) {}"), device("good", GOOD)
    w = worker(sandbox)
    timeouts = parser_runs.labels("timeout")._value.get()
    suspended = parser_runs.labels("suspended")._value.get()
    batch = [Work(record(hostile, n), hostile) for n in range(5)]
    batch += [Work(record(good, n), good) for n in range(5)]
    outputs = w.process(batch)
    assert len(by_topic(outputs, TOPICS.data)) == 5  # every good record
    reasons = [
        dict(o.headers)["dead_reason"].decode() for o in by_topic(outputs, TOPICS.dead_letter)
    ]
    assert len(reasons) == 5  # every hostile record, but only the first one ran
    assert reasons[0] == "payload parser: timeout: parser exceeded 0.2 s CPU time"
    assert all(r.startswith("payload parser suspended for another") for r in reasons[1:])
    assert "save a fixed parser" in reasons[1]
    assert parser_runs.labels("timeout")._value.get() == timeouts + 1
    assert parser_runs.labels("suspended")._value.get() == suspended + 4


def test_a_cheap_parser_that_hangs_on_one_message_in_a_batch(
    sandbox: ParserSandbox, batches: list[int]
) -> None:
    # Cheap runs go through the engine in batches; the one that hangs stops its batch, is
    # run again alone with the full limit, and its device is suspended before its next
    # message, while the other device's messages are all stored, in order.
    spin = "if (payload[0].value === 'FF') { while (true) {} } " + GOOD
    flaky, good = device("flaky", spin), device("good", GOOD)
    w = worker(sandbox)
    w.process([Work(record(flaky, 0), flaky), Work(record(good, 0), good)])  # known cheap
    batch = [
        Work(
            record(good, n),
            good,
        )
        for n in range(1, 4)
    ]
    batch += [Work(record(flaky, 1, b"\xff"), flaky)]
    batch += [Work(record(flaky, n), flaky) for n in range(2, 5)]
    batch += [Work(record(good, n), good) for n in range(4, 7)]
    outputs = w.process(batch)
    data = by_topic(outputs, TOPICS.data)
    assert [dict(o.headers)["message_id"] for o in data] == [
        f"msg-good-{n}".encode() for n in range(1, 7)
    ]
    reasons = [
        dict(o.headers)["dead_reason"].decode() for o in by_topic(outputs, TOPICS.dead_letter)
    ]
    assert reasons[0] == "payload parser: timeout: parser exceeded 0.2 s CPU time"
    assert len(reasons) == 4
    assert all(r.startswith("payload parser suspended for another") for r in reasons[1:])
    assert batches[0] == len(batch)  # the whole batch went into the engine at once first


def test_suspensions_grow_reset_on_success_and_lift_on_change() -> None:
    guard = ParserGuard(base=5.0, cap=12.0)
    assert guard.observe("d", "timeout", "timeout: ...", now=100.0) == 5.0
    assert guard.suspended("d", now=104.9) is not None
    assert guard.suspended("d", now=105.1) is None
    assert guard.suspended("other", now=101.0) is None
    assert guard.observe("d", "memory", "memory: ...", now=106.0) == 10.0
    assert guard.observe("d", "timeout", "timeout: ...", now=117.0) == 12.0  # capped
    guard.observe("d", "ok", "", now=130.0)
    assert guard.observe("d", "timeout", "timeout: ...", now=131.0) == 5.0  # a fresh start
    guard.lift("d")
    assert guard.suspended("d", now=131.5) is None
    assert guard.observe("d", "error", "TypeError: ...", now=132.0) is None  # a throw is cheap
