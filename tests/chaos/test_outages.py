"""Kafka and the database go away in the middle of a QoS 1 load, then come back.

Kafka (our own Tansu, SIGKILLed): the gateway stops acknowledging, keeps every connection,
refuses nothing; once Tansu is back (fresh, memory storage) and the topics exist again
(``bus.ensure_topics``, as ``sluice run``'s supervisor does), publishing resumes, new messages
are stored, no service died and none spins. A restarted Tansu has no topics and may
acknowledge produces to missing topics and drop them, so only messages first published after
the topics exist again are required to be stored; the others are counted.

Here the services outlive the broker, as they do when a Kafka cluster is unreachable for a
while. A broker that comes back *empty* also invalidates the consumers' positions (offsets on
the old log name other records on the new one), so some of the messages published after the
restart are skipped by consumers that kept running; this case asserts only that new data
flows. ``sluice run`` therefore restarts every service when its embedded broker dies, and
tests/e2e/test_sluice_run.py shows every message acknowledged after that restart stored.

The database (our own PostgreSQL cluster, stopped with ``-m immediate``): storage waits and
retries without committing its offsets, and every acknowledged message is stored once.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chaoslib import probes
from chaoslib.infra import create_topics, own_tansu, start_stack
from chaoslib.mqttload import NO_RESEND, Ledger, LoadClient, judge
from chaoslib.report import report, sizes

from sluice.embedded import EmbeddedKafka
from sluice.testing.fixtures import new_database
from sluice.testing.postgres import ThrowawayPostgres
from sluice.testing.stack import Stack

SERVICES = ("gateway", "actions", "parser", "storage", "api")
ACK_TRANSIT = 1.0  # seconds a PUBACK sent before the broker died may take to arrive
IDLE_CPU_LIMIT = 0.25  # CPU seconds per second: an idle service that spins uses ~1
NOTICE_GRACE = 30.0  # seconds the database may stay away past the outage until storage notices
# Seconds the load may run before an outage until every device has a stored row: parser and
# actions look devices and actions up in the database once, then from their caches, so a
# device whose first message meets the outage waits upstream and never reaches storage.
WARM_GRACE = 60.0


@dataclass(frozen=True)
class Outage:
    clients: int
    rate: float  # messages per second, all clients together
    before: float  # seconds of load before the outage
    outage: float  # seconds the broker or database is away
    after: float  # seconds of load after it is back
    idle: float  # seconds of idle CPU measured after recovery


REDUCED = Outage(clients=4, rate=120, before=2, outage=5, after=3, idle=3)
FULL = Outage(clients=8, rate=300, before=10, outage=30, after=20, idle=15)


class Load:
    """Devices of one account publishing through LoadClients until ``finish()``."""

    def __init__(self, stack: Stack, size: Outage, name: str) -> None:
        self.stack = stack
        account = stack.create_account(name, plan=stack.unlimited_plan())
        self.devices = []
        for i in range(size.clients):
            device = stack.create_device(account["token"], name=f"{name}-{i}")
            stack.insert_action(account["token"], device["device_id"], "chaos/#")
            self.devices.append(device)
        self.ledger = Ledger()
        self.producing = True
        rng = random.Random()
        self.clients = [
            LoadClient(
                f"{name}-{i}",
                stack.mqtt_port,
                device["token"],
                self.ledger,
                producing=lambda: self.producing,
                version=5 if i % 2 else 4,
                rate=size.rate / size.clients,
                rng=random.Random(rng.random()),
            )
            for i, device in enumerate(self.devices)
        ]
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Future[None]] = []

    @property
    def device_ids(self) -> list[str]:
        return [d["device_id"] for d in self.devices]

    def start(self) -> None:
        self.tasks = [asyncio.ensure_future(c.run(self.stop)) for c in self.clients]

    async def finish(self, timeout: float = 180) -> None:
        self.producing = False
        try:
            await asyncio.wait_for(asyncio.gather(*self.tasks), timeout)
        finally:
            self.stop.set()
            await asyncio.gather(*self.tasks, return_exceptions=True)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def alive(stack: Stack) -> dict[str, bool]:
    return {name: proc.alive() for name, proc in stack.processes.items()}


# -- Kafka ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka_outage_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, EmbeddedKafka]]:
    """One stack on a Tansu of its own for this module's outages (each on fresh devices)."""
    tmp_path = tmp_path_factory.mktemp("kafka-outage")
    broker = own_tansu(tmp_path / "tansu")
    url, cleanup = new_database("sqlite", tmp_path)
    try:
        stack = start_stack(broker.bootstrap, url, tmp_path / "logs")
    except Exception:
        broker.stop()
        raise
    try:
        yield stack, broker
    finally:
        stack.stop()
        broker.stop()
        cleanup()


@dataclass
class KafkaCycle:
    """One outage: load, SIGKILL of Tansu, a fresh Tansu, topics again, more load."""

    load: Load
    marks: dict[str, float]
    pending_during: float
    rows: Counter[int]

    @property
    def after_topics(self) -> list[int]:
        return self.load.ledger.first_sent_between(self.marks["topics"])

    def lost_after_topics(self) -> list[int]:
        return [s for s in self.after_topics if not self.rows.get(s)]


def kafka_cycle(stack: Stack, broker: EmbeddedKafka, size: Outage, name: str) -> KafkaCycle:
    load = Load(stack, size, name)
    marks: dict[str, float] = {}
    pending: list[float] = []

    async def main() -> None:
        load.start()
        await asyncio.sleep(size.before)
        assert broker.process is not None
        broker.process.kill()  # SIGKILL: the broker vanishes mid-load
        await in_thread(broker.process.wait)
        marks["down"] = time.monotonic()
        await asyncio.sleep(size.outage / 2)
        gateway = probes.metrics(stack, "gateway")
        pending.append(probes.metric_sum(gateway, "sluice_gateway_kafka_pending"))
        await asyncio.sleep(size.outage / 2)
        # Client-side receive times: a PUBACK Kafka earned just before the kill may still
        # be on its way to the client; after ACK_TRANSIT nothing acknowledged is legitimate.
        marks["held_acks"] = len(load.ledger.acked_between(marks["down"] + ACK_TRANSIT))
        marks["connected_at_end_of_outage"] = sum(c.connected.is_set() for c in load.clients)
        await in_thread(broker.start)  # a fresh, empty Tansu on the same port
        marks["up"] = time.monotonic()
        await in_thread(create_topics, broker.bootstrap, stack.topic_prefix)
        marks["topics"] = time.monotonic()
        await asyncio.sleep(size.after)
        await load.finish()

    asyncio.run(main())
    after = load.ledger.first_sent_between(marks["topics"])
    # Stop waiting once nothing has moved for 15 s: what is missing then never comes.
    rows = probes.wait_stored(stack.database_url, load.device_ids, after, timeout=120, stall=8)
    cycle = KafkaCycle(load, marks, pending[0], rows)
    return cycle


@pytest.mark.parametrize("size", sizes(REDUCED, FULL))
def test_kafka_outage_holds_acks_keeps_connections_and_recovers(
    kafka_outage_stack: tuple[Stack, EmbeddedKafka], size: Outage
) -> None:
    stack, broker = kafka_outage_stack
    cycle = kafka_cycle(stack, broker, size, "kafka-outage")
    ledger, marks, rows = cycle.load.ledger, cycle.marks, cycle.rows
    outcome = judge(ledger, rows)
    after_topics = cycle.after_topics
    held = ledger.first_sent_between(marks["down"], marks["topics"])
    before = ledger.first_sent_between(0, marks["down"])
    # Processes have settled: a consumer or the gateway stuck in a retry loop shows here.
    cpu = probes.idle_cpu(stack, SERVICES, size.idle)
    figures = {
        "sent": outcome.sent,
        "acked": outcome.acked,
        "acks while Kafka was down (after the first second)": marks["held_acks"],
        "gateway publishes waiting for Kafka mid-outage": cycle.pending_during,
        "clients connected at the end of the outage": (
            f"{marks['connected_at_end_of_outage']}/{len(cycle.load.clients)}"
        ),
        "connection losses": dict(ledger.drops) or 0,
        "refused": len(ledger.refused),
        "sent after topics were recreated": len(after_topics),
        "of those stored": len(after_topics) - len(cycle.lost_after_topics()),
        "sent during the outage (held)": len(held),
        "held: acked after recovery": sum(1 for s in held if s in ledger.acked),
        "held: stored": sum(1 for s in held if rows.get(s)),
        "sent before the outage: acked / stored": (
            f"{sum(1 for s in before if s in ledger.acked)} / "
            f"{sum(1 for s in before if rows.get(s))}"
        ),
        "duplicates (extra rows) by cause": outcome.duplicates or 0,
        "idle CPU s/s after recovery": cpu,
        "processes alive": all(alive(stack).values()),
    }
    report(f"kafka outage[{size.outage:.0f} s]", figures)

    assert all(alive(stack).values()), stack.logs()
    # Nothing acknowledged while Kafka could not have stored it.
    assert marks["held_acks"] == 0
    assert cycle.pending_during > 0, "the gateway had nothing waiting for Kafka mid-outage"
    # Connections kept, nothing refused.
    assert marks["connected_at_end_of_outage"] == len(cycle.load.clients)
    assert not ledger.drops, ledger.drops
    assert not ledger.server_disconnects, ledger.server_disconnects
    assert not ledger.refused, ledger.refused
    # Publishing resumed: every held and later publish got its PUBACK, data flows again.
    # (That every message published after the topics are back is stored is the next test.)
    assert not ledger.unacked()
    assert after_topics, "no publish after the topics came back"
    assert len(cycle.lost_after_topics()) < len(after_topics), "nothing new was stored"
    assert outcome.duplicates.get(NO_RESEND, 0) == 0
    assert all(v < IDLE_CPU_LIMIT for v in cpu.values()), cpu


# -- the database -----------------------------------------------------------------------


@pytest.fixture
def db_outage_stack(
    own_postgres: ThrowawayPostgres, kafka: EmbeddedKafka, tmp_path: Path
) -> Iterator[Stack]:
    stack = start_stack(kafka.bootstrap, own_postgres.url, tmp_path / "logs")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.parametrize("size", sizes(REDUCED, FULL))
def test_database_outage_storage_waits_and_loses_nothing(
    db_outage_stack: Stack, own_postgres: ThrowawayPostgres, size: Outage
) -> None:
    stack = db_outage_stack
    load = Load(stack, size, "db-outage")
    marks: dict[str, Any] = {}

    def storage_failures() -> float:
        return probes.metric_sum(
            probes.metrics(stack, "storage"), "sluice_batch_failures_total", service="storage"
        )

    async def main() -> None:
        load.start()
        await asyncio.sleep(size.before)
        started = time.monotonic()
        while time.monotonic() < started + WARM_GRACE:
            stored = await in_thread(probes.devices_with_rows, stack.database_url, load.device_ids)
            if len(stored) == len(load.device_ids):
                break
            await asyncio.sleep(0.5)
        marks["warm-up (s)"] = round(size.before + time.monotonic() - started, 1)
        failures_before = storage_failures()
        await in_thread(own_postgres.stop, "immediate")
        marks["down"] = time.monotonic()
        await asyncio.sleep(size.outage)
        # Storage notices when a batch reaches it while the database is away; records take a
        # moment through gateway, Kafka and parser, so on a busy machine the outage is held
        # (load still running) until it has, or NOTICE_GRACE has passed.
        held_until = marks["down"] + size.outage + NOTICE_GRACE
        while time.monotonic() < held_until:
            if storage_failures() > failures_before:
                break
            await asyncio.sleep(0.5)
        marks["outage seconds"] = round(time.monotonic() - marks["down"], 1)
        marks["sent during the outage"] = len(load.ledger.first_sent_between(marks["down"]))
        marks["acked during the outage"] = len(load.ledger.acked_between(marks["down"]))
        marks["storage batch failures during the outage"] = storage_failures() - failures_before
        marks["alive during the outage"] = alive(stack)
        await in_thread(own_postgres.start)
        await asyncio.sleep(size.after)
        await load.finish()

    try:
        asyncio.run(main())
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"pg_ctl failed: {exc.stderr!r}")
    ledger = load.ledger
    rows = probes.wait_stored(stack.database_url, load.device_ids, ledger.acked, timeout=180)
    outcome = judge(ledger, rows)
    figures = {
        **outcome.figures(),
        "sent during the outage": marks["sent during the outage"],
        "acked during the outage (Kafka has them)": marks["acked during the outage"],
        "storage batch failures during the outage": marks[
            "storage batch failures during the outage"
        ],
        "load before the outage (s)": marks["warm-up (s)"],
        "database away (s)": marks["outage seconds"],
        "connection losses": dict(ledger.drops) or 0,
        "processes alive": all(alive(stack).values()),
    }
    report(f"database outage[{size.outage:.0f} s]", figures)

    assert all(marks["alive during the outage"].values()), marks["alive during the outage"]
    assert all(alive(stack).values()), stack.logs()
    assert marks["storage batch failures during the outage"] > 0, (
        f"storage never noticed in {marks['outage seconds']} s\n{stack.logs()}"
    )
    assert marks["acked during the outage"] > 0, "ingestion stops at the gateway"
    assert not ledger.unacked()
    assert not outcome.lost, f"acknowledged but not stored: {outcome.lost[:20]}"
    assert outcome.rows == outcome.stored, outcome.duplicates
    assert not ledger.drops, ledger.drops
