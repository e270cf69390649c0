"""Hostile payload parsers run on the live stack while other devices' data keeps flowing.

Bystander devices publish a steady QoS 1 load through an insert action and an ordinary
parser that also reports whether anything of another run is visible to it. Meanwhile
hostile devices publish again and again through parsers that loop forever, exhaust memory,
recurse without end, flood the microtask queue, pollute built-ins and probe for host objects.

What must hold: every acknowledged bystander message is stored exactly once and sees clean
built-ins; each hostile run ends as a dead letter with its reason (or, for the probes, stores
proof that no host object was reachable); the parser process stays up with bounded memory.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from chaoslib import probes
from chaoslib.mqttload import NO_RESEND, Ledger, LoadClient, judge
from chaoslib.report import report, sizes
from sqlalchemy import select

from sluice.db import create_engine, session_factory
from sluice.db.models import DataPoint
from sluice.testing.stack import Stack

BYSTANDER = """
const clean = [String(({}).polluted), typeof leftover, String([1].map((x) => x)[0]),
               String(JSON.parse("2")), Buffer.from("ab").toString("hex"),
               typeof Object.prototype.variable].join(",");
const item = payload[0];
payload = [{ variable: "seq", value: Number(item.value) }];
if (item.value % 10 === 0) payload.push({ variable: "clean", value: clean });
"""
CLEAN = "undefined,undefined,1,2,6162,undefined"

HOSTILE = {
    "infinite loop": "console.log('spinning'); while (true) {}",
    "memory bomb": "const keep = []; for (;;) keep.push(new Array(100000).fill(1.5));",
    "string bomb": "let s = 'x'; for (;;) s = s + s;",
    "deep recursion": "function down(n) { return down(n + 1) + 1; } down(0);",
    "microtask flood (left pending)": """
        let n = 0;
        function again() { n++; return Promise.resolve().then(again); }
        again();
        payload = [{ variable: "microtasks", value: n }];
    """,
    "microtask flood (awaited)": "async function spin() { for (;;) await null; } await spin();",
    "prototype pollution": """
        Object.prototype.polluted = "yes";
        Object.defineProperty(Object.prototype, "variable", { get() { return "hijacked"; },
                                                              configurable: true });
        Array.prototype.map = () => "hijacked";
        JSON.parse = () => "hijacked";
        Buffer.prototype.toString = () => "hijacked";
        globalThis.leftover = 1;
        payload = [{ variable: "polluter", value: 1 }];
    """,
    "host-object probing": """
        const probes = {};
        for (const name of ["require", "process", "std", "os", "fetch", "setTimeout",
                            "XMLHttpRequest", "WebSocket", "Deno", "Bun", "module", "global"]) {
          probes[name] = typeof globalThis[name];
        }
        try { probes.ctor = typeof this.constructor.constructor("return process")(); }
        catch (e) { probes.ctor = e.name; }
        try { probes.fn = typeof Function("return this")().process; }
        catch (e) { probes.fn = e.name; }
        try { await import("os"); probes.imported = "os"; }
        catch (e) { probes.imported = e.name; }
        payload = [{ variable: "probes", value: JSON.stringify(probes) }];
    """,
}
# How each one must end: a dead-letter reason prefix, or stored values to check.
EXPECTED_DEAD = {
    "infinite loop": ("payload parser: timeout", "payload parser suspended"),
    "memory bomb": ("payload parser: memory", "payload parser suspended"),
    "string bomb": ("payload parser: InternalError: string too long",),
    "deep recursion": ("payload parser: RangeError: Maximum call stack size exceeded",),
    "microtask flood (awaited)": ("payload parser: timeout", "payload parser suspended"),
}
# Stored: the polluter's and the prober's own output, and the un-awaited microtask chain,
# whose pending jobs die with the run (the next run of any device never sees them).
EXPECTED_STORED = ("prototype pollution", "host-object probing", "microtask flood (left pending)")


@dataclass(frozen=True)
class Flow:
    bystanders: int
    rate: float  # bystander messages per second, all together
    seconds: float
    hostile_rate: float  # messages per second per hostile device


REDUCED = Flow(bystanders=3, rate=60, seconds=10, hostile_rate=1.0)
FULL = Flow(bystanders=6, rate=200, seconds=90, hostile_rate=2.0)


def hostile_payload(seq: int) -> bytes:
    return b'{"variable":"attack","value":%d}' % seq


async def _rows(url: str, device: str) -> list[tuple[str, Any]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            stmt = select(DataPoint.variable, DataPoint.value_text).where(
                DataPoint.device_id == device
            )
            return [(v, t) for v, t in (await session.execute(stmt)).all()]
    finally:
        await engine.dispose()


def rows_of(stack: Stack, device: str) -> list[tuple[str, Any]]:
    return asyncio.run(_rows(stack.database_url, device))


def parser_counters(stack: Stack) -> dict[str, float]:
    """Parser runs by outcome and dead letters by reason."""
    out: dict[str, float] = {}
    for line in probes.metrics(stack, "parser").splitlines():
        match = re.match(r"(sluice_parser_runs|sluice_dead_letters)_total\{(.*)\} (\S+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
            kind = "runs" if match[1] == "sluice_parser_runs" else "dead letters"
            key = f"{kind} {labels.get('outcome') or labels.get('reason')}"
            out[key] = out.get(key, 0) + float(match[3])
    return out


def reason_kind(reason: str) -> str:
    """A dead-letter reason without its numbers and line: one kind per way of failing."""
    return re.sub(r"\d+", "N", reason.split(" (line")[0].split(" after it exceeded")[0])


def dead_reasons(stack: Stack, devices: list[str]) -> dict[str, list[str]]:
    """The dead-letter reasons recorded so far, per device (read from the topic's start)."""

    async def read() -> dict[str, list[str]]:
        consumer = AIOKafkaConsumer(
            stack.topic_prefix + "dead-letter",
            bootstrap_servers=stack.kafka_bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            found: dict[str, list[str]] = {device: [] for device in devices}
            idle = 0
            while idle < 2:
                batch = await consumer.getmany(timeout_ms=300)
                idle = 0 if batch else idle + 1
                for recs in batch.values():
                    for r in recs:
                        key = (r.key or b"").decode()
                        if key in found:
                            headers = {k: v.decode() for k, v in r.headers}
                            found[key].append(headers.get("dead_reason", ""))
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


@pytest.mark.parametrize("size", sizes(REDUCED, FULL))
def test_hostile_parsers_are_contained_while_other_devices_flow(
    sqlite_stack: Stack, size: Flow
) -> None:
    stack = sqlite_stack
    account = stack.create_account("parser-escapes", plan=stack.unlimited_plan())
    bystanders = []
    for i in range(size.bystanders):
        device = stack.create_device(
            account["token"], name=f"bystander-{i}", payload_parser=BYSTANDER
        )
        stack.insert_action(account["token"], device["device_id"], "chaos/#")
        bystanders.append(device)
    hostile = {}
    for name, code in HOSTILE.items():
        device = stack.create_device(account["token"], name=name, payload_parser=code)
        stack.insert_action(account["token"], device["device_id"], "chaos/#")
        hostile[name] = device
    parser_pid = probes.pid_of(stack, "parser")
    rss_before = probes.rss_mb(parser_pid)
    counters_before = parser_counters(stack)
    ledger, attacks = Ledger(), Ledger()
    until = time.monotonic() + size.seconds
    rng = random.Random()

    def producing() -> bool:
        return time.monotonic() < until

    clients = [
        LoadClient(
            f"bystander-{i}-{rng.random()}",
            stack.mqtt_port,
            d["token"],
            ledger,
            producing=producing,
            rate=size.rate / size.bystanders,
        )
        for i, d in enumerate(bystanders)
    ] + [
        LoadClient(
            f"hostile-{i}-{rng.random()}",
            stack.mqtt_port,
            d["token"],
            attacks,
            producing=producing,
            rate=size.hostile_rate,
            payload=hostile_payload,
        )
        for i, d in enumerate(hostile.values())
    ]
    rss_peak = rss_before

    async def main() -> None:
        nonlocal rss_peak
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(c.run(stop)) for c in clients]
        try:
            while not all(t.done() for t in tasks):
                rss_peak = max(rss_peak, probes.rss_mb(parser_pid))
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    ids = [d["device_id"] for d in bystanders]
    rows = probes.wait_stored(stack.database_url, ids, ledger.acked, timeout=240)
    outcome = judge(ledger, rows)
    clean_values: dict[str, int] = {}
    for device in ids:
        for variable, value in rows_of(stack, device):
            if variable == "clean":
                clean_values[value] = clean_values.get(value, 0) + 1
    stored = {name: rows_of(stack, d["device_id"]) for name, d in hostile.items()}
    by_device = dead_reasons(stack, [d["device_id"] for d in hostile.values()])
    dead = {name: by_device[d["device_id"]] for name, d in hostile.items()}
    after = parser_counters(stack)
    counters = {
        k: after[k] - counters_before.get(k, 0)
        for k in after
        if after[k] != counters_before.get(k, 0)
    }
    rss_after = probes.rss_mb(parser_pid)
    figures = {
        "bystanders": {**outcome.figures(), "clean checks": clean_values},
        "hostile messages sent / acked": [attacks.sent, len(attacks.acked)],
        "hostile outcomes": {
            name: {
                **Counter(reason_kind(r) for r in dead[name]),
                **({"stored items": len(stored[name])} if stored[name] else {}),
            }
            for name in HOSTILE
        },
        "host objects seen by the prober": sorted(
            {t for v, t in stored["host-object probing"] if v == "probes"}
        ),
        "parser counters (delta)": counters,
        "parser RSS MB before/peak/after": [round(rss_before), round(rss_peak), round(rss_after)],
        "parser alive": stack.processes["parser"].alive(),
    }
    report(f"parser escapes[{size.seconds:.0f} s]", figures)

    assert stack.processes["parser"].alive(), stack.logs()
    assert not outcome.lost, outcome.lost[:20]
    assert not ledger.unacked()
    assert outcome.duplicates.get(NO_RESEND, 0) == 0
    assert outcome.rows == outcome.stored
    assert set(clean_values) == {CLEAN}, clean_values
    for name, prefixes in EXPECTED_DEAD.items():
        assert dead[name], f"{name}: no dead letter"
        assert all(r.startswith(prefixes) for r in dead[name]), (name, dead[name])
        assert not stored[name], (name, stored[name])
    for name in EXPECTED_STORED:
        assert stored[name], f"{name}: its own output is stored"
        assert not dead[name], (name, dead[name])
    probes_seen = {t for v, t in stored["host-object probing"] if v == "probes"}
    for text in probes_seen:
        found = json.loads(text)
        reachable = {k: v for k, v in found.items() if v not in ("undefined", "ReferenceError")}
        assert not reachable, reachable
    assert rss_peak - rss_before < 400
