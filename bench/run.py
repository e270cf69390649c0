"""``make bench``: named scenarios against Sluice and, where it applies, Mosquitto on the same
machine in the same run. Each scenario prints one JSON line; ``--report`` rewrites
docs/benchmarks.md's results table and chart from the JSON lines of this run."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from loadgen import Target, collect, new_event, percentile, run_in_processes, start_processes

from sluice import bus, records
from sluice.embedded import EmbeddedKafka, free_port
from sluice.settings import SluiceSettings
from sluice.testing.stack import Stack

Scenario = Callable[[dict[str, Any], "Brokers"], list[dict[str, Any]]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn

    return register


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Brokers:
    """Sluice (Tansu + gateway + api, or the whole stack) and Mosquitto, started on demand."""

    def __init__(
        self, workdir: Path, full_stack: bool, database_url: str | None, devices: int = 10
    ) -> None:
        self.workdir = workdir
        self.devices = devices
        self.full_stack = full_stack
        self.database_url = database_url
        self.kafka: EmbeddedKafka | None = None
        self.stack: Stack | None = None
        self.mosquitto: subprocess.Popen[bytes] | None = None
        self.mosquitto_port = 0
        self.tokens: list[str] = []
        self.account_token = ""

    def sluice(self) -> Target:
        if self.stack is None:
            self.kafka = EmbeddedKafka(log_path=self.workdir / "tansu.log")
            self.kafka.start()
            asyncio.run(self.kafka.wait_ready())
            url = self.database_url or f"sqlite+aiosqlite:///{self.workdir / 'bench.db'}"
            from sluice_api.migrate import upgrade

            asyncio.run(upgrade(url))
            settings = SluiceSettings(kafka_bootstrap=self.kafka.bootstrap, topic_partitions=8)
            asyncio.run(bus.ensure_topics(settings, records.TopicNames("sluice.")))
            services = (
                ("storage", "parser", "actions", "gateway", "api")
                if self.full_stack
                else ("gateway", "api")
            )
            self.stack = Stack(
                self.kafka.bootstrap,
                url,
                "sluice.",
                self.workdir / "logs",
                services=services,
                # Every load connection comes from 127.0.0.1: lift the per-address cap
                # (1,000 by default) that would refuse conn-10k's connections.
                extra_env={
                    "SLUICE_LOG_LEVEL": "WARNING",
                    "SLUICE_MAX_CONNECTIONS_PER_IP": "100000",
                },
            )
            self.stack.start()
            account = self.stack.create_account("bench", plan=self.stack.unlimited_plan())
            self.account_token = account["token"]
            # One device per publisher: records are keyed by device, so several devices
            # spread the pipeline over partitions as real fleets do.
            for n in range(self.devices):
                device = self.stack.create_device(
                    self.account_token, name=f"bench-{n}", tags=[{"key": "bench", "value": "1"}]
                )
                self.tokens.append(device["token"])
            self.stack.create_action(
                self.account_token,
                name="store bench data",
                type="mqtt_topic",
                trigger=[{"tag_key": "bench", "tag_value": "1", "topic": "ingest/#"}],
                action={"type": "insert"},
            )
        return Target("127.0.0.1", self.stack.mqtt_port, self.tokens)

    def gateway_pid(self) -> int:
        assert self.stack is not None
        proc = self.stack.processes["gateway"].process
        assert proc is not None
        return proc.pid

    def mosquitto_target(self) -> Target:
        if self.mosquitto is None:
            binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
            self.mosquitto_port = free_port()
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.mosquitto_port} 127.0.0.1\nallow_anonymous true\n"
                "max_inflight_messages 0\nmax_queued_messages 100000\npersistence false\n"
            )
            self.mosquitto = subprocess.Popen(
                [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(0.5)
        return Target("127.0.0.1", self.mosquitto_port)

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.kafka is not None:
            self.kafka.stop()
        if self.mosquitto is not None:
            self.mosquitto.terminate()
            self.mosquitto.wait()


def publish_jobs(
    target: Target, publishers: int, processes: int, **job: Any
) -> list[dict[str, Any]]:
    per = [
        publishers // processes + (1 if i < publishers % processes else 0) for i in range(processes)
    ]
    jobs, first = [], 0
    for count in per:
        if count:
            jobs.append(
                {
                    "kind": "publish",
                    "host": target.host,
                    "port": target.port,
                    "tokens": target.tokens,
                    "first": first,
                    "count": count,
                    **job,
                }
            )
            first += count
    return jobs


def measure_publish(target: Target, cfg: dict[str, Any], qos: int) -> dict[str, Any]:
    jobs = publish_jobs(
        target,
        cfg["publishers"],
        cfg["processes"],
        kind="publish",
        topic="bench/{n}",
        qos=qos,
        size=cfg["size"],
        duration=cfg["duration"],
        window=cfg["window"],
    )
    results = run_in_processes(jobs)
    acked = sum(r["stats"]["acked"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "msgs_per_s": round(acked / cfg["duration"]),
        "acked": int(acked),
        "seconds": round(seconds, 1),
    }


@scenario("qos1-publish")
def qos1_publish(cfg: dict[str, Any], brokers: Brokers) -> list[dict[str, Any]]:
    """QoS 1, 10 publishers, 64-byte payloads; Sluice acks only after Kafka (acks=all)."""
    out = []
    for name, target in (("sluice", brokers.sluice()), ("mosquitto", brokers.mosquitto_target())):
        figures = measure_publish(target, cfg, qos=1)
        out.append(
            {
                "scenario": "qos1-publish",
                "broker": name,
                "publishers": cfg["publishers"],
                "payload": cfg["size"],
                **figures,
            }
        )
    return out


def _fan_in(target: Target, cfg: dict[str, Any]) -> dict[str, Any]:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    proc = ctx.Process(target=_subscriber_process, args=(child, target, cfg, ready), daemon=True)
    proc.start()
    ready.wait(30)
    jobs = publish_jobs(
        target,
        cfg["publishers"],
        max(1, cfg["processes"] - 1),
        kind="publish",
        topic="fanin/{n}",
        qos=0,
        size=cfg["size"],
        duration=cfg["duration"],
        window=0,
        rate=cfg["fan_in_rate"] / cfg["publishers"],
    )
    sent = sum(r["stats"]["sent"] for r in run_in_processes(jobs))
    received, latencies = parent.recv()
    proc.join()
    return {
        "msgs_per_s": round(received / cfg["duration"]),
        "sent": int(sent),
        "received": int(received),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
    }


def _subscriber_process(conn: Any, target: Target, cfg: dict[str, Any], ready: Any) -> None:
    import uvloop
    from loadgen import subscriber

    async def main() -> tuple[float, list[int]]:
        stats = {"received": 0.0}
        latencies: list[int] = []
        client = await subscriber(target, 999, "fanin/#", 0, stats, latencies)
        ready.set()
        await asyncio.sleep(cfg["duration"] + 3)
        client.transport.close()
        return stats["received"], latencies

    uvloop.install()
    conn.send(asyncio.run(main()))


@scenario("fan-in")
def fan_in(cfg: dict[str, Any], brokers: Brokers) -> list[dict[str, Any]]:
    """QoS 0, 10 publishers → 1 subscriber at a fixed offered rate (delivered rate, latency)."""
    out = []
    for name, target in (("sluice", brokers.sluice()), ("mosquitto", brokers.mosquitto_target())):
        out.append(
            {
                "scenario": "fan-in",
                "broker": name,
                "publishers": cfg["publishers"],
                "payload": cfg["size"],
                **_fan_in(target, cfg),
            }
        )
    return out


@scenario("conn-10k")
def conn_10k(cfg: dict[str, Any], brokers: Brokers) -> list[dict[str, Any]]:
    """10k idle authenticated connections held by one gateway process: RSS and connect rate."""
    target = brokers.sluice()
    pid = brokers.gateway_pid()
    before = rss_mb(pid)
    count = cfg["connections"]
    processes = cfg["processes"]
    jobs = [
        {
            "kind": "idle",
            "host": target.host,
            "port": target.port,
            "tokens": target.tokens,
            "first": i * (count // processes),
            "count": count // processes,
            "hold": 4,
        }
        for i in range(processes)
    ]
    import multiprocessing as mp
    import threading

    peak = [before]

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.2)

    done = threading.Event()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    del mp
    results = run_in_processes(jobs)
    done.set()
    sampler.join()
    connected = sum(r["stats"]["connected"] for r in results)
    connect_seconds = max(r["stats"]["connect_seconds"] for r in results)
    return [
        {
            "scenario": "conn-10k",
            "broker": "sluice",
            "connections": int(connected),
            "connects_per_s": round(connected / connect_seconds),
            "rss_before_mb": round(before, 1),
            "rss_peak_mb": round(peak[0], 1),
            "rss_per_connection_kb": round((peak[0] - before) * 1024 / max(1, connected), 1),
        }
    ]


@scenario("gateway-workers")
def gateway_workers(cfg: dict[str, Any], brokers: Brokers) -> list[dict[str, Any]]:
    """QoS 1 publish against one gateway process and against `--workers 2` (SO_REUSEPORT)."""
    target = brokers.sluice()
    out = [{"scenario": "gateway-workers", "workers": 1, **measure_publish(target, cfg, qos=1)}]
    assert brokers.stack is not None
    port = free_port()
    proc = brokers.stack.add(
        "gateway-2w",
        SLUICE_MQTT_PORT=str(port),
        SLUICE_WS_PORT=str(free_port()),
        SLUICE_NODE_ID="bench-2w",
    )
    proc.argv = [sys.executable, "-m", "sluice.cli", "gateway", "--workers", "2"]
    brokers.stack.processes["gateway"].stop()  # one gateway at a time on this machine
    proc.start()
    brokers.stack.wait_ready(["gateway-2w"])
    two = Target("127.0.0.1", port, target.tokens)
    out.append({"scenario": "gateway-workers", "workers": 2, **measure_publish(two, cfg, qos=1)})
    proc.stop()
    brokers.stack.processes["gateway"].start()
    brokers.stack.wait_ready(["gateway"])
    return out


def _pub_sub(
    target: Target,
    cfg: dict[str, Any],
    *,
    subscribers: int,
    sub_filter: str,
    publishers: int,
    topic: str,
    qos: int,
    rate: float,
    sub_processes: int,
) -> dict[str, Any]:
    """Start subscribers (in their own processes), then publishers; count deliveries."""
    ready = [new_event() for _ in range(sub_processes)]
    per = subscribers // sub_processes
    sub_jobs = [
        {
            "kind": "subscribe",
            "host": target.host,
            "port": target.port,
            "tokens": target.tokens,
            "first": i * per,
            "count": per if i < sub_processes - 1 else subscribers - per * i,
            "filter": sub_filter,
            "qos": qos,
            "hold": cfg["duration"] + 4,
            "ready": ready[i],
        }
        for i in range(sub_processes)
    ]
    running = start_processes(sub_jobs)
    for event in ready:
        event.wait(120)
    pub_jobs = publish_jobs(
        target,
        publishers,
        max(1, cfg["processes"] - 1),
        topic=topic,
        qos=qos,
        size=cfg["size"],
        duration=cfg["duration"],
        window=cfg["window"],
        rate=rate,
    )
    sent = sum(r["stats"]["sent"] for r in run_in_processes(pub_jobs))
    results = collect(running)
    received = sum(r["stats"]["received"] for r in results)
    latencies = [lat for r in results for lat in r["latencies"]]
    return {
        "published": int(sent),
        "delivered": int(received),
        "delivered_per_s": round(received / cfg["duration"]),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
    }


@scenario("p2p")
def p2p(cfg: dict[str, Any], brokers: Brokers) -> list[dict[str, Any]]:
    """N publishers → N subscribers, one topic each, QoS 1."""
    n = cfg["p2p_pairs"]
    out = []
    for name, target in (("sluice", brokers.sluice()), ("mosquitto", brokers.mosquitto_target())):
        figures = _pub_sub(
            target,
            cfg,
            subscribers=n,
            sub_filter="p2p/{n}",
            publishers=n,
            topic="p2p/{n}",
            qos=1,
            rate=0.0,
            sub_processes=1,
        )
        out.append({"scenario": "p2p", "broker": name, "pairs": n, **figures})
    return out


@scenario("fan-out")
def fan_out(cfg: dict[str, Any], brokers: Brokers) -> list[dict[str, Any]]:
    """1 publisher → many subscribers of one topic, QoS 0, at a fixed publish rate."""
    n = cfg["fan_out_subscribers"]
    out = []
    for name, target in (("sluice", brokers.sluice()), ("mosquitto", brokers.mosquitto_target())):
        figures = _pub_sub(
            target,
            cfg,
            subscribers=n,
            sub_filter="fanout/all",
            publishers=1,
            topic="fanout/all",
            qos=0,
            rate=cfg["fan_out_rate"],
            sub_processes=1,
        )
        out.append(
            {
                "scenario": "fan-out",
                "broker": name,
                "subscribers": n,
                "publish_rate": cfg["fan_out_rate"],
                **figures,
            }
        )
    return out


def _rows(brokers: Brokers) -> int:
    import sqlalchemy as sa

    from sluice.db import create_engine

    async def query() -> int:
        engine = create_engine(brokers.database_url or "")
        async with engine.connect() as conn:
            count = (await conn.execute(sa.text("SELECT count(*) FROM data_points"))).scalar_one()
        await engine.dispose()
        return int(count)

    return asyncio.run(query())


def _truncate(brokers: Brokers) -> None:
    import sqlalchemy as sa

    from sluice.db import create_engine

    async def run() -> None:
        engine = create_engine(brokers.database_url or "")
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM data_points"))
        await engine.dispose()

    asyncio.run(run())


def _points_written(metrics_url: str) -> float:
    import re
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(r'sluice_storage_points_total\{outcome="offered"\} ([0-9.e+]+)', text)
    return float(match.group(1)) if match else 0.0


def _schedule_latencies(
    samples: list[tuple[float, float]], started: float, rate: float, count: int
) -> list[int]:
    """Nanoseconds from each message's scheduled send to the first sample counting it."""
    out = []
    index = 0
    for n in range(1, count + 1, max(1, count // 2000)):
        while index < len(samples) and samples[index][1] < n:
            index += 1
        if index == len(samples):
            break
        out.append(int((samples[index][0] - (started + n / rate)) * 1e9))
    return out


def _publish_and_sample(
    brokers: Brokers, jobs: list[dict[str, Any]]
) -> tuple[int, float, list[tuple[float, float]]]:
    """Run the publishers while sampling storage's written-points counter every 20 ms, until
    every acknowledged publish is written (or 5 minutes pass)."""
    assert brokers.stack is not None
    metrics_url = brokers.stack.processes["storage"].health_url.replace("/readyz", "/metrics")
    base = _points_written(metrics_url)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), _points_written(metrics_url) - base))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.monotonic()
    sampler.start()
    acked = int(sum(r["stats"]["acked"] for r in run_in_processes(jobs)))
    deadline = time.monotonic() + 300
    while (not samples or samples[-1][1] < acked) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    sampler.join()
    return acked, started, samples


def _when(samples: list[tuple[float, float]], count: float) -> float | None:
    return next((t for t, n in samples if n >= count), None)


@scenario("ingest-e2e")
def ingest_e2e(cfg: dict[str, Any], brokers: Brokers) -> list[dict[str, Any]]:
    """QoS 1 JSON publishes with an insert action → rows in PostgreSQL (whole pipeline)."""
    target = brokers.sluice()
    if not brokers.full_stack or not (brokers.database_url or "").startswith("postgres"):
        raise SystemExit("ingest-e2e needs the whole stack on PostgreSQL (see bench/run.py --help)")
    out = []
    # Sustained: as fast as the pipeline takes it.
    _truncate(brokers)
    jobs = publish_jobs(
        target,
        cfg["publishers"],
        cfg["processes"],
        topic="ingest/{n}",
        qos=1,
        size=0,
        duration=cfg["ingest_seconds"],
        window=cfg["window"],
        json_items=True,
    )
    acked, started, samples = _publish_and_sample(brokers, jobs)
    done = _when(samples, acked)
    early, late = _when(samples, acked * 0.1), _when(samples, acked * 0.9)
    out.append(
        {
            "scenario": "ingest-e2e",
            "mode": "sustained",
            "acked": acked,
            "rows": _rows(brokers),
            "publish_seconds": cfg["ingest_seconds"],
            "rows_per_s": round(acked / (done - started)) if done else None,
            "steady_rows_per_s": round(acked * 0.8 / (late - early))
            if early and late and late > early
            else None,
        }
    )
    # Latency at a fixed rate, from the same samples against the send schedule (message n
    # leaves at start + n / rate).
    _truncate(brokers)
    rate = cfg["ingest_rate"]
    jobs = publish_jobs(
        target,
        cfg["publishers"],
        cfg["processes"],
        topic="ingest/{n}",
        qos=1,
        size=0,
        duration=cfg["latency_seconds"],
        window=cfg["window"],
        json_items=True,
        rate=rate / cfg["publishers"],
    )
    acked, started, samples = _publish_and_sample(brokers, jobs)
    latencies = _schedule_latencies(samples, started, rate, acked)
    out.append(
        {
            "scenario": "ingest-e2e",
            "mode": f"{rate:g} msg/s",
            "acked": acked,
            "rows": _rows(brokers),
            "p50_ms": round(percentile(latencies, 0.5), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
        }
    )
    return out


QUICK = {
    "publishers": 2,
    "processes": 1,
    "size": 64,
    "duration": 1.0,
    "window": 20,
    "connections": 50,
    "p2p_pairs": 4,
    "fan_out_subscribers": 20,
    "fan_out_rate": 20,
    "ingest_seconds": 2.0,
    "latency_seconds": 2.0,
    "ingest_rate": 200,
    "fan_in_rate": 2000,
}
FULL = {
    "publishers": 10,
    "processes": 2,
    "size": 64,
    "duration": 10.0,
    "window": 100,
    "connections": 10_000,
    "p2p_pairs": 100,
    "fan_out_subscribers": 1000,
    "fan_out_rate": 20,
    "ingest_seconds": 60.0,
    "latency_seconds": 30.0,
    "ingest_rate": 5000,
    "fan_in_rate": 70_000,
}
PIPELINE_SCENARIOS = {"ingest-e2e"}


def bench_database(quick: bool) -> str | None:
    """A fresh PostgreSQL database on the local server for the pipeline scenarios."""
    url = os.environ.get("SLUICE_BENCH_DATABASE_URL")
    if url:
        return url
    import asyncpg

    name = "sluice_bench_quick" if quick else "sluice_bench"

    async def create() -> None:
        conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@contextmanager
def brokers_for(full_stack: bool, database_url: str | None) -> Iterator[Brokers]:
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        brokers = Brokers(Path(tmp), full_stack, database_url)
        try:
            yield brokers
        finally:
            brokers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scenarios", nargs="*", default=list(SCENARIOS), help=f"any of {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny configuration (used by the tests)"
    )
    parser.add_argument("--out", type=Path, help="append the JSON lines to this file")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    lines = []
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    # MQTT-only scenarios run on gateway + API; the pipeline ones on the whole stack and
    # PostgreSQL, each group on a fresh stack so one does not load the other.
    groups = [
        ([s for s in args.scenarios if s not in PIPELINE_SCENARIOS], False, None),
        ([s for s in args.scenarios if s in PIPELINE_SCENARIOS], True, "pg"),
    ]
    for names, full_stack, database in groups:
        if not names:
            continue
        url = bench_database(args.quick) if database == "pg" else None
        with brokers_for(full_stack=full_stack, database_url=url) as brokers:
            for name in names:
                for line in SCENARIOS[name](cfg, brokers):
                    line["quick"] = args.quick
                    print(json.dumps(line), flush=True)
                    lines.append(line)
    if args.out:
        with args.out.open("a") as fh:
            for line in lines:
                fh.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
