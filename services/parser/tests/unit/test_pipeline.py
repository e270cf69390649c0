"""Normalise → parser → validate for one ingest record, as the parser service runs it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice import records
from sluice.config import DeviceInfo
from sluice.dataitems import item_to_json, validate_items
from sluice.ids import derived_id
from sluice_parser import pipeline as pipeline_module
from sluice_parser.pipeline import Pipeline, item_ids
from sluice_parser.sandbox import MAX_CODE_BYTES, ParserSandbox

DECODER = """
const frame = payload.find((x) => x.variable === "payload");
const bytes = Buffer.from(frame.value, "hex");
console.log("frame of", bytes.length, "bytes on", frame.metadata?.mqtt_topic);
payload = [
  { variable: "temperature", value: bytes.readInt16BE(0) / 100, unit: "C" },
  { variable: "site", value: device.tags[0].value },
];
"""


def device(parser: str | None = DECODER, **params: str) -> DeviceInfo:
    return DeviceInfo(
        id="6566e0b5f1c2a40009d6e7a1",
        account_id="6566e0b5f1c2a40009d6e7a0",
        name="sensor",
        type="immutable",
        active=True,
        tags=(("site", "north"),),
        params=tuple((k, v, True) for k, v in params.items()),
        payload_parser=parser,
        chunk_period="month",
        chunk_retention=12,
    )


def mqtt(topic: str = "sensors/1", message_id: str = "m-1") -> records.Envelope:
    return records.Envelope(
        message_id=message_id,
        account="a",
        device="d",
        topic=topic,
        kind=records.KIND_MQTT,
        received_at=1_732_000_000_000,
    )


@pytest.fixture(scope="module")
def pipeline() -> Iterator[Pipeline]:
    with ParserSandbox(time_limit=0.3, memory_limit=32 * 2**20) as sandbox:
        yield Pipeline(sandbox)


def test_binary_message_is_normalised_parsed_and_validated(pipeline: Pipeline) -> None:
    out = pipeline.process(mqtt(), bytes.fromhex("09c4ff"), device())
    assert out.error is None
    assert out.outcome == "ok"
    assert out.input == [
        {
            "variable": "payload",
            "value": "09C4FF",
            "metadata": {"mqtt_topic": "sensors/1", "topic": "sensors/1"},
        }
    ]
    assert out.console == ["log: frame of 3 bytes on sensors/1"]
    assert [(i["variable"], i["value"], i["unit"]) for i in out.items] == [
        ("temperature", 25, "C"),
        ("site", "north", None),
    ]
    assert {i["time"] for i in out.items} == {"2024-11-19T07:06:40.000Z"}  # received_at
    assert len({i["group"] for i in out.items}) == 1
    assert len({i["id"] for i in out.items}) == 2


def test_payload_type_hex_param_forces_hex(pipeline: Pipeline) -> None:
    text = b"\x31\x32"  # "12": valid UTF-8, normalised as text unless the device says hex
    assert pipeline.process(mqtt(), text, device(None)).items[0]["value"] == "12"
    forced = pipeline.process(mqtt(), text, device(None, payload_type="HEX"))
    assert forced.items[0]["value"] == "3132"


def test_same_message_gets_the_same_ids_and_group(pipeline: Pipeline) -> None:
    first = pipeline.process(mqtt(message_id="m-7"), bytes.fromhex("ff01"), device())
    again = pipeline.process(mqtt(message_id="m-7"), bytes.fromhex("ff01"), device())
    other = pipeline.process(mqtt(message_id="m-8"), bytes.fromhex("ff01"), device())
    assert [i["id"] for i in first.items] == [i["id"] for i in again.items]
    assert first.items[0]["group"] == again.items[0]["group"] != other.items[0]["group"]
    assert not {i["id"] for i in first.items} & {i["id"] for i in other.items}


def test_parse_error_items_are_stored_like_any_item(pipeline: Pipeline) -> None:
    code = """
    try { Buffer.from(payload[0].value, "hex").readUInt32BE(0); }
    catch (e) { payload = [{ variable: "parse_error", value: e.message }]; }
    """
    out = pipeline.process(mqtt(), b"\x01", device(code))
    assert out.error is None
    assert [(i["variable"], i["value"]) for i in out.items] == [
        ("parse_error", "Attempt to access memory outside buffer bounds")
    ]


def test_parser_that_stores_nothing_is_not_an_error(pipeline: Pipeline) -> None:
    for code in ("payload = [];", "payload = null;"):
        out = pipeline.process(mqtt(), b"x", device(code))
        assert (out.error, out.items, out.outcome) == (None, [], "ok")


@pytest.mark.parametrize(
    ("code", "outcome", "message"),
    [
        ("console.log('about to fail');\nnull.x;", "error", "TypeError: cannot read property"),
        ("while (true) {}", "timeout", "timeout: parser exceeded 0.3 s CPU time"),
        ("const a = []; for (;;) a.push(new Array(1e5).fill(1));", "memory", "memory: parser"),
        ("payload = [{ variable: 'bad name', value: 1 }];", "invalid", "item 0"),
        ("payload = 'text';", "invalid", "data must be an item object"),
    ],
    ids=["throws", "loops", "allocates", "invalid variable", "not items"],
)
def test_failures_store_nothing_and_say_why(
    pipeline: Pipeline, code: str, outcome: str, message: str
) -> None:
    out = pipeline.process(mqtt(), b"x", device(code))
    assert out.items == []
    assert out.outcome == outcome
    assert out.error is not None
    assert message in out.error
    if outcome == "invalid":
        assert out.stage == "validation"
    else:
        assert out.stage == "parser"
        assert out.error.startswith("payload parser: ")
    if outcome == "error":
        assert out.console == ["log: about to fail"]
        assert out.error.endswith("(line 2)")
    # the sandbox recovers for the next message
    assert pipeline.process(mqtt(), bytes.fromhex("ff01"), device()).error is None


def test_code_over_the_limit_is_refused_per_message(pipeline: Pipeline) -> None:
    code = "//" + "x" * MAX_CODE_BYTES
    out = pipeline.process(mqtt(), b"x", device(code))
    assert out.outcome == "too_large"
    assert out.error == (
        f"payload parser: parser code is {MAX_CODE_BYTES + 2} bytes; "
        f"the limit is {MAX_CODE_BYTES} bytes"
    )


def test_built_in_parser_by_reference(pipeline: Pipeline) -> None:
    lpp = bytes.fromhex("03670110056700ff")
    out = pipeline.process(mqtt(), lpp, device("@sluice/cayenne-lpp", payload_type="hex"))
    assert out.error is None
    assert [(i["variable"], i["value"]) for i in out.items] == [
        ("temperature_3", 27.2),
        ("temperature_5", 25.5),
    ]
    unknown = pipeline.process(mqtt(), lpp, device("@sluice/lora"))
    assert unknown.outcome == "unknown_builtin"
    assert unknown.error is not None
    assert "json-flatten, senml, cayenne-lpp" in unknown.error


def test_http_items_skip_normalisation(pipeline: Pipeline) -> None:
    envelope = replace(mqtt(), kind=records.KIND_ITEMS)
    items = [{"variable": "payload", "value": "0bb8"}]
    out = pipeline.process(envelope, records.dumps(items), device())
    assert out.input == items
    assert out.items[0]["value"] == 30


def test_device_json_follows_a_changed_device(pipeline: Pipeline) -> None:
    code = "payload = [{ variable: 'site', value: device.tags[0].value }];"
    first = device(code)
    assert pipeline.process(mqtt(), b"x", first).items[0]["value"] == "north"
    moved = replace(first, tags=(("site", "south"),))
    assert pipeline.process(mqtt(), b"x", moved).items[0]["value"] == "south"


def stored_form(raw: Any, envelope: records.Envelope) -> list[dict[str, Any]]:
    """What the full check stores for ``raw`` in a message: item_to_json, with the ids."""
    received = datetime.fromtimestamp(envelope.received_at / 1000, UTC)
    message_id = envelope.message_id
    items = validate_items(raw, now=received, default_group=derived_id(message_id, "group"))
    ids = item_ids(message_id, len(items))
    return [{**item_to_json(item), "id": i} for item, i in zip(items, ids, strict=True)]


PARSER_OUTPUT: list[Any] = [
    {"variable": "Ab", "value": 1, "unit": "C", "time": "2024-01-01T00:00:00.5Z"},
    {"variable": "b", "value": "x", "location": {"lat": 1, "lng": 2}, "metadata": {"k": 1}},
    {"variable": "c", "value": True, "group": "g"},
    {"variable": "d", "value": 2.5, "time": "2024-01-01T00:00:00.500Z", "metadata": {"k": 1}},
    {"variable": "e", "value": None, "unit": "°C", "serie": "s"},
]


@pytest.mark.parametrize(
    "output",
    [PARSER_OUTPUT, PARSER_OUTPUT[2:], PARSER_OUTPUT[3:4], [{"variable": "z", "value": 2**60}]],
)
def test_stored_items_are_item_to_json_with_ids(pipeline: Pipeline, output: list[Any]) -> None:
    # The first run checks every item the long way; the second finds the names known and
    # may take the output as the engine wrote it: both store exactly this.
    envelope = mqtt(message_id="m-1")
    expected = stored_form(output, envelope)
    code = f"payload = {json.dumps(output)};"
    for _ in range(2):
        out = pipeline.process(envelope, b"x", device(code))
        assert (out.error, out.stored) == (None, len(expected))
        assert out.items == expected


def test_item_ids_are_distinct_and_follow_the_message() -> None:
    ids = item_ids("m-1", 3)
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == 3
    assert item_ids("m-1", 3) == ids
    assert item_ids("m-2", 3)[0] not in ids
    assert item_ids("m-1", 5)[:3] == ids


def test_base64_is_not_decoded_by_the_service(pipeline: Pipeline) -> None:
    # The API decodes base64 sources when they are saved; the service runs what is stored.
    code = base64.b64encode(b"payload = [];").decode()
    out = pipeline.process(mqtt(), b"x", device(code))
    assert out.outcome == "error"


NO_PARSER_INPUTS: list[tuple[str, bytes]] = [
    ("kind", b'{"variable": "unseen_a", "value": 21.5, "unit": "C"}'),
    ("kind", b'[{"variable": "unseen_b", "value": 1, "group": "g", "metadata": {"k": [1]}}]'),
    ("kind", b'{"variable": "unseen_c", "value": true, "time": "2024-01-01T00:00:00.500Z"}'),
    ("hex", b"\x0b\xb8"),
    ("text", b"on"),
]


@pytest.mark.parametrize(("what", "body"), NO_PARSER_INPUTS)
def test_without_a_parser_plain_items_are_stored_as_the_full_check_stores_them(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, what: str, body: bytes
) -> None:
    # The first message checks its names the long way; after that, plainly valid items go
    # to the bus from their JSON text, without the full check, and store exactly the same.
    full_checks: list[Any] = []
    full_check = pipeline_module.validate_json_items

    def counted(items: Any, **kwargs: Any) -> Any:
        full_checks.append(items)
        return full_check(items, **kwargs)

    monkeypatch.setattr(pipeline_module, "validate_json_items", counted)
    params = {"payload_type": "hex"} if what == "hex" else {}
    envelope = mqtt(message_id=f"m-{what}-{len(body)}")
    stored = []
    for _ in range(2):
        out = pipeline.process(envelope, body, device(None, **params))
        assert (out.error, out.parsed) == (None, False)
        expected = stored_form(out.input, envelope)
        assert out.items == expected
        assert out.stored == len(expected)
        stored.append(out.data)
    assert stored[0] == stored[1]  # the same bytes either way
    assert len(full_checks) <= 1


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"variable": "t", "value": 1, "time": 1732000000000.5}', None),  # a fraction
        (b'{"variable": "t", "value": 123456789012345678901234}', None),
        (b'{"variable": "t", "value": 1, "unit": 5}', "unit"),
        (b'{"variable": "bad name!", "value": 1}', "variable"),
        (b"[]", "no data items"),
    ],
)
def test_without_a_parser_anything_unusual_gets_the_full_check(
    pipeline: Pipeline, body: bytes, error: str | None
) -> None:
    envelope = mqtt()
    received = datetime.fromtimestamp(envelope.received_at / 1000, UTC)
    for _ in range(2):  # also once the names are known
        out = pipeline.process(envelope, body, device(None))
        if error is None:
            items = validate_items(out.input, now=received, default_group="g")
            assert out.error is None
            assert [item["value"] for item in out.items] == [item.value for item in items]
            assert [item["time"] for item in out.items] == [
                item_to_json(item)["time"] for item in items
            ]
        else:
            assert out.error is not None
            assert error in out.error
            assert (out.outcome, out.stage, out.data) == ("invalid", "validation", None)
