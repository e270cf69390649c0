"""Payload parsers on the live stack: MQTT publish (insert action) and POST /data text/plain →
normalisation → the device's parser → validation → storage, and every way a parser can fail.

What a user sees of a failure: nothing stored, the record on sluice.dead-letter with the
reason, a Live Inspector event (sluice.inspector, type "parser") with the error and the
console lines, a metric and a log line with the device and message ids.
"""

from __future__ import annotations

import asyncio
import base64
import re
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from sluice.testing.mqtt import Client, wait_for
from sluice.testing.stack import Stack

# A TagoIO-style decoder: 2-byte temperature, 1-byte humidity; short frames → parse_error.
DECODER = """
const frame = payload.find((x) => x.variable === "payload");
if (frame) {
  const bytes = Buffer.from(frame.value, "hex");
  console.log("frame", frame.value, "from", device.params.find((p) => p.key === "model").value);
  if (bytes.length < 3) {
    payload = [{ variable: "parse_error", value: `expected 3 bytes, got ${bytes.length}` }];
  } else {
    payload = [
      { variable: "temperature", value: bytes.readInt16BE(0) / 100, unit: "C" },
      { variable: "humidity", value: bytes.readUInt8(2) },
    ];
  }
}
"""


class Device:
    """A device with an insert action on ``up/#``, in an account of its own.

    Its own account: the actions service caches an account's actions and learns of a new
    one through sluice.control within about a second, so a device added to an account whose
    actions are cached could publish before its insert action counts. A new account's
    actions are read from the database on first use.
    """

    def __init__(self, stack: Stack, account: dict[str, Any], parser: str | None, **params: str):
        self.stack = stack
        self.account_token = account["token"]
        created = stack.create_device(account["token"], name="d", payload_parser=parser)
        self.id, self.token = created["device_id"], created["token"]
        if params:
            with stack.client(self.account_token) as http:
                body = [{"key": k, "value": v} for k, v in params.items()]
                http.post(f"/device/{self.id}/params", json=body).raise_for_status()
        stack.insert_action(account["token"], self.id, "up/#")
        self.mqtt = Client(stack.mqtt_port, self.token, version=4)
        assert self.mqtt.connect() == 0

    def publish(self, payload: bytes | str, topic: str = "up/x") -> None:
        assert self.mqtt.publish(topic, payload, qos=1) == 0  # acknowledged once in Kafka

    def values(self, variable: str) -> list[Any]:
        with self.stack.client(self.token) as http:
            response = http.get("/data", params={"variable": variable, "qty": 100})
            response.raise_for_status()
            return [item["value"] for item in reversed(response.json()["result"])]

    def count(self) -> int:
        with self.stack.client(self.account_token) as http:
            response = http.get(f"/device/{self.id}/data_amount")
            response.raise_for_status()
            return int(response.json()["result"])

    def set_parser(self, parser: str) -> None:
        with self.stack.client(self.account_token) as http:
            http.put(f"/device/{self.id}", json={"payload_parser": parser}).raise_for_status()

    def dead_letters(self) -> list[dict[str, str]]:
        return [
            {k: v.decode() for k, v in r.headers}
            for r in topic_records(self.stack, "dead-letter", self.id)
        ]

    def parser_events(self) -> list[dict[str, Any]]:
        events = [orjson.loads(r.value) for r in topic_records(self.stack, "inspector", self.id)]
        return [e for e in events if e["type"] == "parser"]

    def close(self) -> None:
        self.mqtt.disconnect()


@pytest.fixture
def devices(sqlite_stack: Stack) -> Iterator[Any]:
    made: list[Device] = []

    def make(parser: str | None, **params: str) -> Device:
        account = sqlite_stack.create_account(f"parser-{uuid.uuid4().hex[:6]}")
        made.append(Device(sqlite_stack, account, parser, **params))
        return made[-1]

    yield make
    for device in made:
        device.close()


def topic_records(stack: Stack, short: str, key: str) -> list[Any]:
    """Every record of a device on a topic so far (read from the start)."""

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            stack.topic_prefix + short,
            bootstrap_servers=stack.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            found = []
            idle = 0
            while idle < 2:
                batch = await consumer.getmany(timeout_ms=300)
                idle = 0 if batch else idle + 1
                found += [r for recs in batch.values() for r in recs if r.key == key.encode()]
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def parser_metrics(stack: Stack) -> dict[str, float]:
    port = stack.processes["parser"].env["SLUICE_HEALTH_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        match = re.match(r'sluice_parser_runs_total\{outcome="(\w+)"\} ([0-9.e+]+)', line)
        if match:
            found[match[1]] = float(match[2])
        elif line.startswith("sluice_parser_seconds_count "):
            found["seconds_count"] = float(line.split()[1])
    return found


def parser_log(stack: Stack) -> str:
    return stack.processes["parser"].log_path.read_text(errors="replace")


def test_mqtt_binary_frames_are_decoded_and_parse_errors_stored(devices: Any) -> None:
    # The frame is valid UTF-8 ("\x09\x60\x28"): only payload_type=hex makes it hex.
    device = devices(DECODER, payload_type="hex", model="th-1")
    device.publish(bytes.fromhex("096028"))
    device.publish(bytes.fromhex("ff"))
    wait_for(lambda: device.values("parse_error"), what="the parse_error item")
    assert device.values("temperature") == [24.0]
    assert device.values("humidity") == [40]
    assert device.values("parse_error") == ["expected 3 bytes, got 1"]
    # console output reaches the Live Inspector even when nobody watches
    events = wait_for(lambda: len(device.parser_events()) == 2 and device.parser_events())
    assert [e["console"] for e in events] == [
        ["log: frame 096028 from th-1"],
        ["log: frame FF from th-1"],
    ]
    assert all(e["error"] is None and e["outcome"] == "ok" for e in events)


def test_post_data_text_plain_goes_through_the_parser(devices: Any, sqlite_stack: Stack) -> None:
    device = devices(
        """
        const text = payload[0].value;              // "t=21.5;rh=40"
        payload = text.split(";").map((pair) => {
          const [key, value] = pair.split("=");
          return { variable: key === "t" ? "temperature" : key, value: Number(value) };
        });
        payload.push({ variable: "raw_length", value: raw_payload.length });
        """
    )
    with sqlite_stack.client(device.token) as http:
        response = http.post(
            "/data?wait=true", content=b"t=21.5;rh=40", headers={"content-type": "text/plain"}
        )
    assert response.status_code == 200, response.text
    assert device.values("temperature") == [21.5]
    assert device.values("rh") == [40]
    assert device.values("raw_length") == [12]


def test_a_failing_parser_stores_nothing_and_reports_why(devices: Any, sqlite_stack: Stack) -> None:
    device = devices(
        """
        console.log("received", payload[0].value);
        if (payload[0].value === "bad") {
          throw new RangeError("frame too short");
        }
        payload = [{ variable: "reading", value: payload[0].value }];
        """
    )
    device.publish("bad")
    device.publish("good")
    wait_for(lambda: device.values("reading"), what="the good message after the bad one")
    assert device.values("reading") == ["good"]
    assert device.count() == 1  # nothing of the bad message

    [dead] = wait_for(device.dead_letters, what="the dead letter")
    assert dead["dead_reason"] == "payload parser: RangeError: frame too short (line 4)"
    assert dead["dead_service"] == "parser"
    failed = [e for e in device.parser_events() if e["error"]]
    assert [(e["error"], e["console"], e["message_id"]) for e in failed] == [
        (dead["dead_reason"], ["log: received bad"], dead["message_id"])
    ]
    assert f"device={device.id}" in parser_log(sqlite_stack)
    assert re.search(
        rf"message not stored .*message_id={dead['message_id']}", parser_log(sqlite_stack)
    )

    # over HTTP the sender is told at once (POST /data?wait=true reads the dead letter)
    with sqlite_stack.client(device.token) as http:
        response = http.post(
            "/data?wait=true", content=b"bad", headers={"content-type": "text/plain"}
        )
    assert response.status_code == 400
    assert "RangeError: frame too short" in response.json()["message"]
    assert device.count() == 1


def test_invalid_parser_output_is_refused_whole(devices: Any) -> None:
    device = devices(
        "payload = [{ variable: 'ok', value: 1 }, { variable: 'not valid!', value: 2 }];"
    )
    device.publish("x")
    [dead] = wait_for(device.dead_letters, what="the dead letter")
    assert dead["dead_reason"].startswith("item 1: ")
    [event] = wait_for(device.parser_events)
    assert (event["stage"], event["outcome"]) == ("validation", "invalid")
    assert event["output"][1] == {"variable": "not valid!", "value": 2}
    assert device.count() == 0


def test_hostile_parsers_are_contained_while_other_devices_flow(
    devices: Any, sqlite_stack: Stack
) -> None:
    before = parser_metrics(sqlite_stack)
    spinner = devices("console.log('spinning'); while (true) {}")
    hog = devices("const keep = []; for (;;) keep.push(new Array(100000).fill(1.5));")
    prober = devices(
        """
        function down(n) { return down(n + 1) + 1; }
        let recursion = "none";
        try { down(0); } catch (e) { recursion = e.name; }
        Object.prototype.polluted = "yes";
        Array.prototype.map = () => "hijacked";
        JSON.parse = () => "hijacked";
        globalThis.leftover = 1;
        let escaped;
        try { escaped = typeof this.constructor.constructor("return process")(); }
        catch (e) { escaped = e.name; }
        payload = [
          { variable: "recursion", value: recursion },
          { variable: "escaped", value: String(escaped) },
          { variable: "host", value: [typeof require, typeof process, typeof std, typeof os,
                                      typeof fetch, typeof setTimeout].join(",") },
        ];
        """
    )
    bystander = devices(
        """
        payload = [
          { variable: "n", value: Number(payload[0].value) },
          { variable: "clean", value: [({}).polluted, typeof leftover, [1].map((x) => x)[0],
                                       JSON.parse("2")].join(",") },
        ];
        """
    )
    spinner.publish("1")
    spinner.publish("2")  # suspended after the first: dead-lettered without running
    hog.publish("1")
    for n in range(3):
        bystander.publish(str(n))
    prober.publish("1")
    wait_for(lambda: prober.values("host"), what="the prober's findings")
    bystander.publish("3")
    wait_for(lambda: len(bystander.values("n")) == 4, what="every bystander message")

    assert bystander.values("n") == [0, 1, 2, 3]
    assert set(bystander.values("clean")) == {",undefined,1,2"}  # nothing leaked between runs
    assert prober.values("recursion") == ["RangeError"]
    assert prober.values("escaped")[0] in ("undefined", "ReferenceError", "TypeError")
    assert prober.values("host") == ["undefined,undefined,undefined,undefined,undefined,undefined"]

    spun = wait_for(lambda: len(spinner.dead_letters()) == 2 and spinner.dead_letters())
    assert spun[0]["dead_reason"] == "payload parser: timeout: parser exceeded 1.0 s CPU time"
    assert spun[1]["dead_reason"].startswith("payload parser suspended for another")
    [hogged] = wait_for(hog.dead_letters)
    assert hogged["dead_reason"] == "payload parser: memory: parser exceeded 64 MB"
    assert spinner.count() == hog.count() == 0
    shown = wait_for(lambda: len(spinner.parser_events()) == 2 and spinner.parser_events())
    assert shown[0]["console"] == ["log: spinning"]
    assert shown[0]["outcome"] == "timeout"

    after = parser_metrics(sqlite_stack)
    for outcome, grew in (("timeout", 1), ("memory", 1), ("suspended", 1), ("ok", 5)):
        assert after.get(outcome, 0) - before.get(outcome, 0) >= grew, outcome
    assert after["seconds_count"] > before.get("seconds_count", 0)

    # Saving a fixed parser lifts the suspension at once.
    spinner.set_parser("payload = [{ variable: 'fixed', value: true }];")
    wait_for(lambda: (spinner.publish("3"), spinner.values("fixed"))[1], what="the fixed parser")


def test_a_saved_parser_change_applies_to_the_next_messages(devices: Any) -> None:
    device = devices("payload = [{ variable: 'version', value: 1 }];")
    device.publish("a")
    wait_for(lambda: device.values("version"), what="version 1")
    # TagoIO sends parser code base64-encoded
    device.set_parser(base64.b64encode(b"payload = [{ variable: 'version', value: 2 }];").decode())
    published = 0

    def republish() -> bool:
        nonlocal published
        device.publish(str(published))
        published += 1
        return 2 in device.values("version")

    wait_for(republish, interval=0.2, what="version 2")
    # Code over 64 kB is refused when saved; the saved parser stays and keeps working.
    with device.stack.client(device.account_token) as http:
        refused = http.put(f"/device/{device.id}", json={"payload_parser": "//" + "x" * 65536})
    assert refused.status_code == 413
    assert refused.json() == {"status": False, "message": "payload_parser is larger than 64 kB"}
    device.publish("last")
    wait_for(lambda: len(device.values("version")) == published + 2, what="every message")
    versions = device.values("version")
    switch = versions.index(2)
    assert versions[:switch] == [1] * switch
    assert versions[switch:] == [2] * (len(versions) - switch)


def test_a_built_in_parser_is_picked_by_name(devices: Any, sqlite_stack: Stack) -> None:
    device = devices("@sluice/cayenne-lpp", payload_type="hex")
    with sqlite_stack.client(device.account_token) as http:
        shown = http.get(f"/device/{device.id}").json()["result"]["payload_parser"]
        refused = http.post("/device", json={"name": "x", "payload_parser": "@sluice/lorawan"})
    assert shown == "@sluice/cayenne-lpp"
    assert refused.status_code == 400
    assert "@sluice/json-flatten, @sluice/senml, @sluice/cayenne-lpp" in refused.json()["message"]
    device.publish(bytes.fromhex("0367011005680a"))  # temperature ch 3, humidity ch 5 (ASCII)
    wait_for(lambda: device.values("humidity_5"), what="the decoded frame")
    assert device.values("temperature_3") == [27.2]
    assert device.values("humidity_5") == [5.0]
