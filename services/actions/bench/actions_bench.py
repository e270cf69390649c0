"""Condition actions per second through one actions process, and webhook latency.

    .venv/bin/python services/actions/bench/actions_bench.py [--count 20000] [--calls 50]

Starts an embedded Tansu (or uses --kafka), a migrated SQLite database with one account,
100 devices tagged ``kind=probe`` and two actions, and one `python -m sluice_actions` child:

- throughput: a tag-scoped condition action (`temperature *`) of type `mqtt`. Produces
  --count data records (as the parser does) and measures until as many records reached the
  downlink topic. The child's CPU time comes from /proc, so `records_per_cpu_s` means
  something on a busy machine too.
- latency: a condition action of type `post` to a local HTTP server; --calls records one at
  a time, from producing the data record to the server receiving the call (the path goes
  through the job topic: data → actions → action-jobs → runner → HTTP).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sluice import bus, records
from sluice.db import create_engine, session_factory
from sluice.db.models import Account, Action, Device
from sluice.embedded import EmbeddedKafka, free_port
from sluice.ids import new_id
from sluice.settings import SluiceSettings
from sluice_api.migrate import upgrade


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_child(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sluice_actions"], env=env)


def wait_ready(url: str) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)


async def seed(url: str, hook_url: str) -> tuple[str, list[str], str]:
    await upgrade(url)
    engine = create_engine(url)
    account, devices, hooked = new_id(), [new_id() for _ in range(100)], new_id()
    async with session_factory(engine)() as session:
        session.add(Account(id=account, name="bench", plan="scale"))
        await session.flush()
        for device in devices:
            tags = [{"key": "kind", "value": "probe"}]
            session.add(Device(id=device, account_id=account, name=device[-6:], tags=tags))
        session.add(Device(id=hooked, account_id=account, name="hooked"))
        await session.flush()
        session.add(
            Action(
                id=new_id(),
                account_id=account,
                name="echo",
                type="condition",
                trigger=[{"tag_key": "kind", "tag_value": "probe", "variable": "temperature",
                          "is": "*"}],
                action={"type": "mqtt", "device": devices[0], "topic": "echo/$DEVICE.NAME$",
                        "payload": "$VALUE$"},
            )
        )  # fmt: skip
        session.add(
            Action(
                id=new_id(),
                account_id=account,
                name="hook",
                type="condition",
                trigger=[{"device": hooked, "variable": "temperature", "is": ">", "value": 0}],
                action={"type": "post", "url": hook_url},
            )
        )
        await session.commit()
    await engine.dispose()
    return account, devices, hooked


def data_record(account: str, device: str, value: float) -> tuple[bytes, list[tuple[str, bytes]]]:
    item = {
        "variable": "temperature",
        "value": value,
        "unit": "C",
        "group": "g",
        "time": "2026-01-05T10:00:00.000Z",
        "location": None,
        "metadata": None,
        "id": new_id(),
    }
    envelope = records.Envelope(message_id=new_id(), account=account, device=device, kind="items")
    return records.dumps([item]), envelope.to_headers()


async def count_until(bootstrap: str, topic: str, wanted: int, timeout: float) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, deadline = 0, time.monotonic() + timeout
        while seen < wanted and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            seen += sum(len(recs) for recs in batch.values())
        return seen
    finally:
        await consumer.stop()


async def bench(args: argparse.Namespace, kafka: str) -> dict[str, Any]:
    received: list[float] = []
    arrived = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(time.monotonic())
            arrived.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="actions-bench-"))
    url = f"sqlite+aiosqlite:///{tmp / 'sluice.db'}"
    account, devices, hooked = await seed(url, f"http://127.0.0.1:{server.server_address[1]}/")
    prefix = f"b{uuid.uuid4().hex[:8]}."
    topics = records.TopicNames(prefix)
    await bus.ensure_topics(SluiceSettings(kafka_bootstrap=kafka, topic_partitions=4), topics)
    health = free_port()
    env = {**os.environ, "SLUICE_KAFKA_BOOTSTRAP": kafka, "SLUICE_DATABASE_URL": url,
           "SLUICE_TOPIC_PREFIX": prefix, "SLUICE_KAFKA_FAST_GROUPS": "true",
           "SLUICE_HEALTH_PORT": str(health), "SLUICE_HEALTH_HOST": "127.0.0.1",
           "SLUICE_LOG_LEVEL": "WARNING"}  # fmt: skip
    child = start_child(env)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await producer.start()
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{health}/readyz")
        latencies = []
        for _ in range(args.calls):
            arrived.clear()
            value, headers = data_record(account, hooked, random.uniform(1, 100))
            sent = time.monotonic()
            await producer.send_and_wait(topics.data, value, key=hooked.encode(), headers=headers)
            await asyncio.to_thread(arrived.wait, 30)
            latencies.append(received[-1] - sent)
        cpu_before, started = cpu_seconds(child.pid), time.monotonic()
        for n in range(args.count):
            device = devices[n % len(devices)]
            value, headers = data_record(account, device, random.uniform(80, 100))
            await producer.send(topics.data, value, key=device.encode(), headers=headers)
        await producer.flush()
        seen = await count_until(kafka, topics.downlink, args.count, 600)
        elapsed, cpu = time.monotonic() - started, cpu_seconds(child.pid) - cpu_before
        latencies.sort()
        return {
            "records": args.count,
            "downlink_records": seen,
            "elapsed_s": round(elapsed, 2),
            "records_per_s": round(seen / elapsed),
            "actions_cpu_s": round(cpu, 2),
            "records_per_cpu_s": round(seen / cpu) if cpu else None,
            "webhook_calls": len(latencies),
            "webhook_latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
            "webhook_latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
            "load_average_1m": os.getloadavg()[0],
        }
    finally:
        await producer.stop()
        child.send_signal(signal.SIGTERM)
        child.wait(30)
        server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--kafka", help="bootstrap servers (default: an embedded Tansu)")
    args = parser.parse_args()
    broker = None
    if args.kafka is None:
        broker = EmbeddedKafka(log_path=Path(tempfile.mkdtemp()) / "tansu.log")
        broker.start()
        asyncio.run(broker.wait_ready())
    try:
        result = asyncio.run(bench(args, args.kafka or broker.bootstrap))  # type: ignore[union-attr]
    finally:
        if broker is not None:
            broker.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
