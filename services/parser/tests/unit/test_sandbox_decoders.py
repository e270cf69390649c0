"""TagoIO-style payload parsers give the same output in the sandbox as under Node.

Node runs each parser the way TagoIO's own open-source runtime (TCore) does: a vm context
whose globals are payload, device, raw_payload, Buffer and console, with the script body
wrapped in a function.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from sluice_parser.realm import loads
from sluice_parser.sandbox import ParserSandbox

NODE = shutil.which("node") or "/usr/bin/node"

pytestmark = pytest.mark.skipif(shutil.which(NODE) is None, reason="Node.js is not installed")

NODE_RUNNER = r"""
const vm = require("vm");
const util = require("util");
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = cases.map(({ code, payload, device, raw }) => {
  const lines = [];
  const log = (level) => (...args) => lines.push(`${level}: ${util.format(...args)}`);
  const context = vm.createContext({
    payload, device, raw_payload: raw === null ? null : Buffer.from(raw, "hex"), Buffer,
    console: {
      log: log("log"), debug: log("debug"), error: log("error"),
      info: log("info"), warn: log("warn"),
    },
  });
  try {
    vm.runInContext(`(function () {\n${code}\n})()`, context);
    const output = JSON.parse(JSON.stringify(context.payload) ?? "null");
    return { payload: output, console: lines, error: null };
  } catch (e) {
    return { payload: null, console: lines, error: `${e.name}: ${e.message}` };
  }
});
process.stdout.write(JSON.stringify(results));
"""

LORAWAN_ENVIRONMENT = r"""
// Temperature / humidity / battery sensor, 7-byte uplink:
// int16 temperature (0.01 °C), uint8 humidity (0.5 %), uint16 battery (mV), uint16 status bits
const payload_raw = payload.find(
  (x) => x.variable === "payload" || x.variable === "payload_raw" || x.variable === "data"
);
if (payload_raw) {
  try {
    const buffer = Buffer.from(payload_raw.value, "hex");
    const status = buffer.readUInt16LE(5);
    const data = [
      { variable: "temperature", value: buffer.readInt16BE(0) / 100, unit: "°C" },
      { variable: "humidity", value: buffer.readUInt8(2) / 2, unit: "%" },
      { variable: "battery", value: Number((buffer.readUInt16BE(3) / 1000).toFixed(2)), unit: "V" },
      { variable: "low_battery", value: Boolean(status & 0x0001) },
      { variable: "tamper", value: (status & 0x0100) !== 0 },
    ];
    payload = payload.concat(
      data.map((x) => ({ ...x, group: payload_raw.group, time: payload_raw.time }))
    );
  } catch (e) {
    console.error(e);
    payload = [{ variable: "parse_error", value: e.message }];
  }
}
"""

DEVICE_PARAMS = r"""
// Calibrated analog sensor: offset and scale come from the device's configuration parameters.
function param(key, fallback) {
  var found = device.params.find(function (p) { return p.key === key; });
  return found ? Number(found.value) : fallback;
}
var offset = param("offset", 0);
var scale = param("scale", 1);
var site = (device.tags.find(function (t) { return t.key === "site"; }) || {}).value || "unknown";
var raw = payload.find(function (x) { return x.variable === "payload"; });
if (raw) {
  var counts = parseInt(raw.value.substr(0, 4), 16);
  var level = (counts * scale + offset).toFixed(1);
  var pending = device.params.filter(function (p) { return !p.sent; }).length;
  payload.push({
    variable: "level", value: Number(level), unit: "cm", metadata: { site: site, counts: counts }
  });
  payload.push({ variable: "config_pending", value: pending });
}
"""

PASS_THROUGH = r"""
// Decodes only the items addressed to it (the frame on port 2); keeps everything else.
const decoded = [];
for (const item of payload) {
  if (item.variable !== "payload" || !item.metadata || item.metadata.port !== 2) {
    decoded.push(item);
    continue;
  }
  const bytes = Buffer.from(item.value, "base64");
  for (i = 0; i < bytes.length; i += 2) {   // sloppy code: an implicit global counter
    decoded.push({ variable: "channel_" + i / 2, value: bytes.readUInt16BE(i), group: item.group });
  }
}
payload = decoded;
"""

PARSE_ERROR = r"""
// Rejects malformed frames with a parse_error item instead of failing the whole message.
const frame = payload.find((x) => x.variable === "payload");
try {
  if (!frame) throw new Error("no payload item");
  const bytes = Buffer.from(frame.value, "hex");
  if (bytes.length !== 6) throw new RangeError(`expected 6 bytes, got ${bytes.length}`);
  if (bytes[0] !== 0xa5) throw new TypeError("bad header 0x" + bytes[0].toString(16));
  const crc = bytes.subarray(0, 5).reduce((a, b) => a ^ b, 0);
  if (crc !== bytes[5]) throw new Error("checksum mismatch");
  payload = [{ variable: "pressure", value: bytes.readUInt32LE(1) / 100, unit: "hPa" }];
} catch (err) {
  payload = [{ variable: "parse_error", value: err.message, metadata: { type: err.name } }];
}
"""

JSON_TEXT = r"""
// Gateway that publishes JSON text: {"ts": ..., "readings": {"t": .., "rh": ..}, "gps": [lat, lng]}
var result = [];
payload.forEach(function (item) {
  if (item.variable !== "payload") return result.push(item);
  var doc = JSON.parse(item.value);
  var time = new Date(doc.ts * 1000).toISOString();
  Object.keys(doc.readings).forEach(function (key) {
    var name = key === "t" ? "temperature" : key;
    result.push({ variable: name, value: doc.readings[key], time: time });
  });
  if (Array.isArray(doc.gps)) {
    var location = { lat: doc.gps[0], lng: doc.gps[1] };
    result.push({ variable: "location", value: doc.gps.join(","), location: location });
  }
  console.log("decoded", Object.keys(doc.readings).length, "readings at", time);
});
payload = result;
"""

RAW_BYTES = r"""
// Uses the raw bytes of the message (binary MQTT payload) rather than the normalised text.
if (raw_payload) {
  const counter = raw_payload.readBigUInt64BE(0);
  const energy = raw_payload.readDoubleLE(8);
  const flags = raw_payload.readUIntBE(16, 3);
  payload = [
    { variable: "counter", value: counter.toString() },
    { variable: "energy", value: Math.round(energy * 1000) / 1000, unit: "kWh" },
    { variable: "flags", value: flags.toString(2).padStart(24, "0") },
    { variable: "tail", value: raw_payload.slice(19).toString("utf8") },
  ];
}
"""

ENV_ITEM = {
    "variable": "payload",
    "value": "09c46d0f3c0101",
    "group": "g-1",
    "time": "2024-05-01T10:00:00Z",
}
DEVICE = {
    "id": "65a0c0ffee",
    "tags": [{"key": "site", "value": "tank-7"}],
    "params": [
        {"key": "offset", "value": "-2.5", "sent": True},
        {"key": "scale", "value": "0.25", "sent": False},
    ],
}
NO_DEVICE = {"id": "65a0c0ffee", "tags": [], "params": []}

CASES: dict[str, tuple[str, list[Any], dict[str, Any], str | None]] = {
    "lorawan environment": (
        LORAWAN_ENVIRONMENT,
        [ENV_ITEM, {"variable": "rssi", "value": -91}],
        NO_DEVICE,
        None,
    ),
    "lorawan environment, short frame": (
        LORAWAN_ENVIRONMENT,
        [{**ENV_ITEM, "value": "09c4"}],
        NO_DEVICE,
        None,
    ),
    "lorawan environment, negative": (
        LORAWAN_ENVIRONMENT,
        [{**ENV_ITEM, "value": "fe0cff0bb80000"}],
        NO_DEVICE,
        None,
    ),
    "device params": (DEVICE_PARAMS, [{"variable": "payload", "value": "01f4"}], DEVICE, None),
    "device params, defaults": (
        DEVICE_PARAMS,
        [{"variable": "payload", "value": "0bb8"}],
        NO_DEVICE,
        None,
    ),
    "pass through": (
        PASS_THROUGH,
        [
            {"variable": "payload", "value": "AAEAAgAD", "metadata": {"port": 2}, "group": "x"},
            {"variable": "payload", "value": "AAEAAgAD", "metadata": {"port": 3}},
            {"variable": "snr", "value": 7.25},
        ],
        NO_DEVICE,
        None,
    ),
    "parse error, good frame": (
        PARSE_ERROR,
        [{"variable": "payload", "value": "a5cd8b0100e2"}],
        NO_DEVICE,
        None,
    ),
    "parse error, checksum": (
        PARSE_ERROR,
        [{"variable": "payload", "value": "a5cd8b0100e3"}],
        NO_DEVICE,
        None,
    ),
    "parse error, long": (
        PARSE_ERROR,
        [{"variable": "payload", "value": "a5102700000092"}],
        NO_DEVICE,
        None,
    ),
    "parse error, short": (
        PARSE_ERROR,
        [{"variable": "payload", "value": "a510"}],
        NO_DEVICE,
        None,
    ),
    "parse error, header": (
        PARSE_ERROR,
        [{"variable": "payload", "value": "b51027000000"}],
        NO_DEVICE,
        None,
    ),
    "parse error, missing": (PARSE_ERROR, [{"variable": "other", "value": 1}], NO_DEVICE, None),
    "json text": (
        JSON_TEXT,
        [
            {
                "variable": "payload",
                "value": '{"ts": 1714557600, "readings": {"t": 21.5, "rh": 40}, "gps": [-23, 46]}',
            },
            {"variable": "battery", "value": 3.6},
        ],
        NO_DEVICE,
        None,
    ),
    "json text, broken": (
        JSON_TEXT,
        [{"variable": "payload", "value": "{not json"}],
        NO_DEVICE,
        None,
    ),
    "raw bytes": (
        RAW_BYTES,
        [{"variable": "payload", "value": "ignored"}],
        NO_DEVICE,
        "00000000075bcd15" + "9a9999999999f13f" + "a00f01" + "6f6bc3a9",
    ),
}


def run_in_node(cases: dict[str, Any]) -> dict[str, Any]:
    """Each case (code, payload, device, raw) run by Node with NODE_RUNNER, by case name."""
    batch = [
        {"code": code, "payload": payload, "device": device, "raw": raw}
        for code, payload, device, raw in cases.values()
    ]
    done = subprocess.run(
        [NODE, "-e", NODE_RUNNER],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(zip(cases, loads(done.stdout), strict=True))


@pytest.fixture(scope="module")
def node_results() -> dict[str, Any]:
    return run_in_node(CASES)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ParserSandbox]:
    with ParserSandbox() as box:
        yield box


@pytest.mark.parametrize("name", list(CASES), ids=str)
def test_decoder_matches_node(
    sandbox: ParserSandbox, node_results: dict[str, Any], name: str
) -> None:
    code, payload, device, raw = CASES[name]
    expected = node_results[name]
    run = sandbox.run(code, payload, device, None if raw is None else bytes.fromhex(raw))
    if expected["error"] is None:
        assert run.error is None, run.error
        assert run.payload == expected["payload"]
    else:
        # V8 and QuickJS word engine errors differently; the type must agree.
        assert run.error is not None
        assert run.error.split(":")[0] == expected["error"].split(":")[0]
    if name != "lorawan environment, short frame":  # console.error(e) prints the stack in Node
        assert run.console == expected["console"]


def test_decoders_produce_what_their_authors_meant(sandbox: ParserSandbox) -> None:
    code, payload, device, _ = CASES["lorawan environment"]
    items = sandbox.run(code, payload, device).payload
    decoded = {item["variable"]: item["value"] for item in items[2:]}
    assert decoded == {
        "temperature": 25.0,
        "humidity": 54.5,
        "battery": 3.9,
        "low_battery": True,
        "tamper": True,
    }
    assert all(
        item["group"] == "g-1" and item["time"] == "2024-05-01T10:00:00Z" for item in items[2:]
    )

    code, payload, device, _ = CASES["parse error, good frame"]
    assert sandbox.run(code, payload, device).payload == [
        {"variable": "pressure", "value": 1013.25, "unit": "hPa"}
    ]
    code, payload, device, _ = CASES["parse error, short"]
    assert sandbox.run(code, payload, device).payload == [
        {
            "variable": "parse_error",
            "value": "expected 6 bytes, got 2",
            "metadata": {"type": "RangeError"},
        }
    ]

    code, payload, device, _ = CASES["device params"]
    level = sandbox.run(code, payload, device).payload[1]
    assert level == {
        "variable": "level",
        "value": 122.5,
        "unit": "cm",
        "metadata": {"site": "tank-7", "counts": 500},
    }
