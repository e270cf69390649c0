"""Throughput of the parser sandbox on a typical LoRaWAN-style hex decoder.

    .venv/bin/python services/parser/bench/sandbox_bench.py [--seconds 3]

Prints runs/s through one ParserSandbox (same code, a different payload each run, as a
parser service sees it), and the per-run cost of the other paths for comparison.
"""

from __future__ import annotations

import argparse
import random
import time

from sluice_parser.sandbox import ParserSandbox

DECODER = r"""
// Environmental sensor: temperature, humidity, battery, CO2 and status flags.
const payload_raw = payload.find(
  (x) => x.variable === "payload" || x.variable === "payload_raw" || x.variable === "data",
);
if (payload_raw) {
  try {
    const buffer = Buffer.from(payload_raw.value, "hex");
    const flags = buffer.readUInt8(11);
    const data = [
      { variable: "temperature", value: buffer.readInt16BE(0) / 100, unit: "°C" },
      { variable: "humidity", value: buffer.readUInt8(2) / 2, unit: "%" },
      { variable: "battery", value: buffer.readUInt16BE(3) / 1000, unit: "V" },
      { variable: "co2", value: buffer.readUInt16LE(5), unit: "ppm" },
      { variable: "pressure", value: buffer.readUInt32BE(7) / 100, unit: "hPa" },
    ];
    if (flags & 0x01) {
      data.push({ variable: "alarm", value: true });
    }
    payload = payload.concat(
      data.map((x) => ({ ...x, group: payload_raw.group, time: payload_raw.time })),
    );
  } catch (e) {
    payload = [{ variable: "parse_error", value: e.message }];
  }
}
"""

DEVICE = {
    "id": "6566e0b5f1c2a40009d6e7a1",
    "tags": [{"key": "model", "value": "env-1"}],
    "params": [],
}


def make_payloads(count: int) -> list[list[dict[str, object]]]:
    rng = random.Random(7)
    return [
        [
            {
                "variable": "payload",
                "value": rng.randbytes(11).hex() + "00",
                "group": f"g{i}",
                "metadata": {"mqtt_topic": "sensors/env"},
            }
        ]
        for i in range(count)
    ]


def measure(
    sandbox: ParserSandbox, code: str, payloads: list[list[dict[str, object]]], seconds: float
) -> tuple[float, float]:
    """Runs per wall-clock second and per CPU second of this process."""
    runs = 0
    wall, cpu = time.perf_counter(), time.process_time()
    deadline = wall + seconds
    while time.perf_counter() < deadline:
        for payload in payloads:
            result = sandbox.run(code, payload, DEVICE)
            if result.error is not None:
                raise SystemExit(f"decoder failed: {result.error}")
        runs += len(payloads)
    return runs / (time.perf_counter() - wall), runs / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    payloads = make_payloads(500)
    polluting = "globalThis.seen = (globalThis.seen || 0) + 1;\n" + DECODER
    extending = "Number.prototype.round2 = function () { return Math.round(this * 100) / 100; };\n"
    seconds = args.seconds
    print(f"{'':45s} {'runs/s':>9s}  {'per CPU s':>9s}  {'us/run':>7s}")
    with ParserSandbox() as sandbox:
        measure(sandbox, DECODER, payloads[:50], 0.2)  # warm up: boot, compile, caches
        report(
            "typical hex decoder (12 bytes -> 5 items)",
            measure(sandbox, DECODER, payloads, seconds),
        )
        report("pass-through parser", measure(sandbox, "payload = payload;", payloads, seconds / 3))
        report(
            "decoder adding a global (cleaned up)",
            measure(sandbox, polluting, payloads, seconds / 3),
        )
        report(
            "decoder extending a built-in (own realm)",
            measure(sandbox, extending + DECODER, payloads[:20], 1.0),
        )


def report(label: str, rates: tuple[float, float]) -> None:
    wall, cpu = rates
    print(f"{label + ':':45s} {wall:9,.0f}  {cpu:9,.0f}  {1e6 / cpu:7.1f}")


if __name__ == "__main__":
    main()
