"""Runs of cheap parsers share one call into the engine (ParserSandbox.run_many): each result
is what a run of its own gives, limits still apply per message, and nothing crosses runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice_parser.realm import loads
from sluice_parser.sandbox import ParserRun, ParserSandbox, RunRequest, device_json, payload_json

DEVICE = {"id": "d1", "tags": [{"key": "model", "value": "x"}], "params": []}
DECODER = """
const frame = payload.find((x) => x.variable === "payload");
const b = Buffer.from(frame.value, "hex");
payload = [
  { variable: "temperature", value: b.readInt16BE(0) / 100, unit: "°C", group: frame.group },
  { variable: "flag", value: (b[2] & 1) === 1, metadata: { model: device.tags[0].value } },
];
"""
SCRIPTS = {
    "decoder": DECODER,
    "throws": "if (payload[0].value.startsWith('ff')) throw new TypeError('bad frame'); "
    "payload = [];",
    "console": "console.log('frame', payload[0].value); console.error({ n: 1 }); payload = null;",
    "raw": "payload = [{ variable: 'raw', value: raw_payload.toString('hex') }];",
    "numbers": "payload = [2 ** 53 + 2, -(2 ** 60), 0.1 + 0.2, 1e21, NaN, 12345678901234567890n];",
    "strings": "payload = ['\\ud800', 'a\\nb', '1234567890123456789', '°'];",
    "adds a global": "leaked = (typeof leaked === 'number' ? leaked : 0) + 1; payload = [leaked];",
    "undefined": "payload = undefined;",
    "not serialisable": "const o = {}; o.self = o; payload = [o];",
    # Ends its batch and runs again alone (the engine throws null when out of memory).
    "throws null": "if (payload[0].value.startsWith('fe')) throw null; payload = [];",
}


def request(code: str, value: str) -> RunRequest:
    items = [{"variable": "payload", "value": value, "group": "g-" + value}]
    return RunRequest(code, payload_json(items), device_json(DEVICE), bytes.fromhex(value))


def run_all(box: ParserSandbox, requests: list[RunRequest]) -> list[ParserRun]:
    done: list[ParserRun] = []
    while len(done) < len(requests):
        done += box.run_many(requests[len(done) :])
    return done


WARM_RUNS = 30


def warmed(box: ParserSandbox, codes: list[str]) -> ParserSandbox:
    # A parser is batched once its runs have shown it is cheap. The first run's time includes
    # compiling it, which on a loaded machine can pass the batching bound by itself; a few
    # more runs bring the running average to what a run costs.
    for code in codes:
        for _ in range(WARM_RUNS):
            box.run_many([request(code, "0102")])
    return box


def view(run: ParserRun) -> tuple[Any, ...]:
    return (run.outcome, run.error, run.console, json.dumps(run.payload))


def test_batched_runs_give_what_runs_of_their_own_give(batches: list[int]) -> None:
    values = ["0a1b01", "ff0000", "fe7f00", "000001"]
    requests = [request(code, value) for value in values for code in SCRIPTS.values()]
    with ParserSandbox() as alone, warmed(ParserSandbox(), list(SCRIPTS.values())) as box:
        expected = [
            alone.run(
                r.code,
                None,
                raw_payload=r.raw_payload,
                device_json=r.device_json,
                payload_json=r.payload_json,
            )
            for r in requests
        ]
        assert all(alone.run(SCRIPTS["adds a global"], []).payload == [1] for _ in range(2))
        got = run_all(box, requests)
    assert [view(run) for run in got] == [view(run) for run in expected]
    assert max(batches) > 1
    assert got[0].payload[0] == {
        "variable": "temperature",
        "value": 25.87,
        "unit": "°C",
        "group": "g-0a1b01",
    }
    assert got[4].payload == [
        float(2**53 + 2),
        -float(2**60),
        0.30000000000000004,
        1e21,
        None,
        "12345678901234567890",
    ]
    assert got[5].payload == ["\ud800", "a\nb", "1234567890123456789", "°"]
    assert got[6].payload == [1]  # every run starts without what the last one left
    assert all(run.duration_ms > 0 for run in got)


def test_a_run_that_hits_the_time_limit_stops_the_batch_and_runs_alone(
    batches: list[int],
) -> None:
    spin = "if (payload[0].value === 'ff') { while (true) {} } payload = [];"
    with warmed(ParserSandbox(time_limit=0.3), [DECODER, spin]) as box:
        requests = [
            request(DECODER, "0a1b01"),
            request(spin, "01"),
            request(spin, "ff"),
            request(DECODER, "0a1b01"),
        ]
        first = box.run_many(requests)
        rest = box.run_many(requests[len(first) :])
    # The batch of four hit its limit; they ran again alone, up to the run that hit it, so
    # the caller can suspend that device before its next message runs.
    assert batches == [4]
    assert [run.outcome for run in first] == ["ok", "ok", "timeout"]
    assert first[2].error == "timeout: parser exceeded 0.3 s CPU time"
    assert [run.outcome for run in rest] == ["ok"]


def test_a_run_out_of_memory_ends_the_batch() -> None:
    bomb = (
        "if (payload[0].value === 'ff') {"
        " const a = []; for (;;) a.push('x'.repeat(1e6) + a.length); }"
        " payload = [];"
    )
    with warmed(ParserSandbox(memory_limit=16 * 2**20), [DECODER, bomb]) as box:
        requests = [request(DECODER, "0a1b01"), request(bomb, "ff"), request(DECODER, "0a1b01")]
        done = run_all(box, requests)
    assert [run.outcome for run in done] == ["ok", "memory", "ok"]
    assert done[1].error == "memory: parser exceeded 16 MB"


def test_async_and_broken_parsers_run_alone(batches: list[int]) -> None:
    awaits = "await null; payload = [1];"
    broken = "payload = ;"
    with warmed(ParserSandbox(), [awaits, broken]) as box:
        done = run_all(box, [request(awaits, "01"), request(broken, "01")] * 3)
    assert [run.payload for run in done[::2]] == [[1]] * 3
    assert all(run.error and run.error.startswith("SyntaxError") for run in done[1::2])
    assert batches == []


def test_engine_json_keeps_javascript_number_semantics() -> None:
    assert loads("[9007199254740993,-1152921504606846976,12]") == [
        9007199254740992.0,
        -1152921504606846976.0,
        12,
    ]
    assert [type(x) for x in loads("[9007199254740993,12]")] == [float, int]
    assert loads('["1234567890123456789",0.30000000000000004]') == [
        "1234567890123456789",
        0.30000000000000004,
    ]
    assert loads('["\\ud800"]') == ["\ud800"]  # a lone surrogate, as the engine escapes it
    with pytest.raises(RecursionError):
        loads("[" * 100_000 + "]" * 100_000)
