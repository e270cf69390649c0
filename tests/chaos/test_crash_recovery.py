"""SIGKILL of the gateway, actions, parser and storage — one at a time, at random moments —
during a QoS 1 load whose every message becomes a row (an insert action).

What must hold (docs/ARCHITECTURE "Guarantees"): every message that got a PUBACK is stored;
a crash of actions, parser or storage creates no duplicate row (records are replayed but row
ids derive from message ids). A gateway crash may make clients resend publishes that never
got a PUBACK — MQTT QoS 1 is at-least-once and the gateway's session state dies with it — so
those duplicates are counted apart, by cause; a message acknowledged on its first
transmission is never duplicated.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chaoslib import probes
from chaoslib.infra import start_stack
from chaoslib.mqttload import (
    GATEWAY_CRASH,
    NO_RESEND,
    UNEXPECTED,
    Ledger,
    LoadClient,
    judge,
)
from chaoslib.report import report, sizes

from sluice.embedded import EmbeddedKafka
from sluice.testing.fixtures import new_database, postgres_admin_url
from sluice.testing.stack import Stack

VICTIMS = ("gateway", "actions", "parser", "storage")


@dataclass(frozen=True)
class Load:
    messages: int  # at least this many; the load also lasts until every kill is done
    clients: int
    rate: float  # messages per second, all clients together
    rounds: int  # each victim is killed once per round
    database: str  # sqlite, postgresql, or best: PostgreSQL when one answers


REDUCED = Load(messages=2500, clients=4, rate=150, rounds=1, database="best")
FULL = {
    database: Load(messages=20000, clients=8, rate=350, rounds=2, database=database)
    for database in ("postgresql", "sqlite")
}


@pytest.fixture
def crash_stack(size: Load, kafka: EmbeddedKafka, tmp_path: Path) -> Iterator[Stack]:
    kind = size.database
    if kind == "best":
        kind = "postgresql" if postgres_admin_url() else "sqlite"
    url, cleanup = new_database(kind, tmp_path)
    # Small storage batches: many transactions in flight, so a kill lands inside one.
    stack = start_stack(kafka.bootstrap, url, tmp_path / "logs", SLUICE_STORAGE_BATCH="200")
    stack.extra_env["_kind"] = kind
    try:
        yield stack
    finally:
        stack.stop()
        cleanup()


class Chaos:
    """Kills each victim in a random order at random moments, restarting it each time."""

    def __init__(self, stack: Stack, rng: random.Random) -> None:
        self.stack, self.rng = stack, rng
        self.gateway_down = False
        self.kills: list[dict[str, Any]] = []
        self.done = asyncio.Event()

    def cause_of_drop(self) -> str:
        return GATEWAY_CRASH if self.gateway_down else UNEXPECTED

    async def run(self, rounds: int, clients: list[LoadClient]) -> None:
        started = time.monotonic()
        try:
            for _ in range(rounds):
                order = list(VICTIMS)
                self.rng.shuffle(order)
                for name in order:
                    await asyncio.sleep(self.rng.uniform(0.5, 3.0))
                    await self.kill_and_restart(name, clients, started)
        finally:
            self.done.set()

    async def kill_and_restart(self, name: str, clients: list[LoadClient], t0: float) -> None:
        proc = self.stack.processes[name]
        if name == "gateway":
            self.gateway_down = True
        at = time.monotonic()
        proc.kill()  # SIGKILL
        down = self.rng.uniform(0.0, 1.0)  # stay dead a moment: work piles up meanwhile
        await asyncio.sleep(down)
        await asyncio.to_thread(self.stack.restart, name, 120)
        if name == "gateway":
            # Clients notice the crash and reconnect; losses until then are the crash's.
            deadline = time.monotonic() + 30
            while not all(c.connected.is_set() for c in clients):
                assert time.monotonic() < deadline, "clients did not reconnect after the crash"
                await asyncio.sleep(0.05)
            self.gateway_down = False
        self.kills.append(
            {
                "service": name,
                "at_s": round(at - t0, 1),
                "down_s": round(time.monotonic() - at, 1),
            }
        )


def run_load(stack: Stack, size: Load, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    account = stack.create_account(f"crash-{seed}", plan=stack.unlimited_plan())
    devices = []
    for i in range(size.clients):
        device = stack.create_device(account["token"], name=f"crash-{i}")
        stack.insert_action(account["token"], device["device_id"], "chaos/#")
        devices.append(device)
    ledger = Ledger()
    chaos = Chaos(stack, rng)

    def producing() -> bool:
        return ledger.sent < size.messages or not chaos.done.is_set()

    clients = [
        LoadClient(
            f"crash-{seed}-{i}",
            stack.mqtt_port,
            device["token"],
            ledger,
            producing=producing,
            cause_of_drop=chaos.cause_of_drop,
            version=5 if i % 2 else 4,
            rate=size.rate / size.clients,
            voluntary_drops=(4.0, 15.0),
            rng=random.Random(rng.random()),
        )
        for i, device in enumerate(devices)
    ]

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.ensure_future(c.run(stop)) for c in clients]
        await asyncio.sleep(1.0)  # the load is flowing before the first kill
        try:
            await chaos.run(size.rounds, clients)
            # Every client finishes: new messages stop, in-flight ones get their PUBACK.
            await asyncio.wait_for(asyncio.gather(*tasks), 300)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    started = time.monotonic()
    asyncio.run(main())
    load_seconds = time.monotonic() - started
    rows = probes.wait_stored(
        stack.database_url, [d["device_id"] for d in devices], ledger.acked, timeout=240
    )
    outcome = judge(ledger, rows)
    return {
        "ledger": ledger,
        "outcome": outcome,
        "chaos": chaos,
        "clients": clients,
        "load_seconds": load_seconds,
    }


@pytest.mark.parametrize("size", sizes(REDUCED, FULL))
def test_sigkill_of_each_service_under_qos1_load(crash_stack: Stack, size: Load) -> None:
    seed = int(os.environ.get("SLUICE_CHAOS_SEED") or random.randrange(1 << 30))
    result = run_load(crash_stack, size, seed)
    ledger: Ledger = result["ledger"]
    outcome = result["outcome"]
    chaos: Chaos = result["chaos"]
    figures = {
        "database": crash_stack.extra_env["_kind"],
        "seed": seed,
        **outcome.figures(),
        "messages with duplicates by cause": outcome.duplicated_messages or 0,
        "connection losses by cause": dict(ledger.drops),
        "refused": len(ledger.refused),
        "kills": chaos.kills,
        "load_s": round(result["load_seconds"], 1),
    }
    report(f"crash[{crash_stack.extra_env['_kind']}, {size.messages}+ msgs]", figures)

    dead = [n for n, p in crash_stack.processes.items() if not p.alive()]
    assert not dead, crash_stack.logs()
    assert len(chaos.kills) == len(VICTIMS) * size.rounds
    assert outcome.sent >= size.messages
    assert not ledger.refused, ledger.refused
    assert not ledger.unacked(), "every client drains its in-flight messages"
    assert not outcome.lost, f"acknowledged but not stored: {outcome.lost[:20]}"
    assert not outcome.phantom
    assert outcome.duplicates.get(NO_RESEND, 0) == 0, (
        "a message sent once was stored more than once: a replay inside the pipeline "
        "duplicated rows"
    )
    assert not outcome.first_ack_duplicated
    assert ledger.drops.get(UNEXPECTED, 0) == 0, "a connection was lost without a gateway crash"
