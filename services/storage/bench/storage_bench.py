"""Storage consumer throughput into PostgreSQL, then device-API read latency over 1M points.

    .venv/bin/python services/storage/bench/storage_bench.py [--points 1000000] [--devices 100]

Uses the local PostgreSQL (``--database``, a fresh database created and dropped), an embedded
Tansu (or ``--kafka``) and the real services as child processes (``python -m sluice_storage``,
then ``python -m sluice_api``). Steps:

1. Produces ``--points`` data points to ``sluice.data`` as the parser writes them (records of
   ``--items`` items, spread over ``--devices`` immutable devices and 5 variables).
2. Starts one storage process on that backlog and measures points written per second from
   its own counter (``sluice_storage_points_total``), and per second of its CPU time (read
   from /proc, which means something on a busy machine too). Prints one JSON line.
3. Starts the API and times ``GET /data?variable=…&query=last_value`` and ``GET /data?qty=100``
   with device tokens of random devices, one request at a time. Prints one JSON line each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, insert, select

from sluice import bus, records
from sluice.dataitems import format_time
from sluice.db import create_engine
from sluice.db.models import Account, DataPoint, Device, DeviceToken, Plan
from sluice.embedded import EmbeddedKafka
from sluice.ids import derived_id, hash_token, new_id, new_token
from sluice.settings import SluiceSettings
from sluice.testing.stack import Stack
from sluice_api.migrate import upgrade

VARIABLES = ("temperature", "humidity", "pressure", "battery", "rssi")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def written(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    match = re.search(r'sluice_storage_points_total\{outcome="offered"\} ([0-9.e+]+)', text)
    return float(match.group(1)) if match else 0.0


async def create_database(admin_url: str) -> str:
    name = f"sluice_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    await upgrade(url)
    return url


async def drop_database(admin_url: str, url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


async def create_tenant(url: str, devices: int) -> dict[str, str]:
    """One account on an unlimited plan, its devices and one token each: {device: token}."""
    engine = create_engine(url)
    plan = f"bench-{uuid.uuid4().hex[:6]}"
    account = new_id()
    tokens = {new_id(): new_token() for _ in range(devices)}
    unlimited = {"data_get_per_min": 10**9, "data_post_per_min": 10**9}
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Plan).values(name=plan, limits=unlimited))
            await conn.execute(insert(Account).values(id=account, name="bench", plan=plan))
            await conn.execute(
                insert(Device),
                [
                    {
                        "id": d,
                        "account_id": account,
                        "name": f"bench-{i}",
                        "chunk_period": "month",
                        "chunk_retention": 12,
                    }
                    for i, d in enumerate(tokens)
                ],
            )
            await conn.execute(
                insert(DeviceToken),
                [
                    {
                        "id": new_id(),
                        "token_hash": hash_token(t),
                        "device_id": d,
                        "account_id": account,
                    }
                    for d, t in tokens.items()
                ],
            )
    finally:
        await engine.dispose()
    return tokens


async def produce(stack: Stack, devices: list[str], points: int, items: int) -> float:
    """Produce the backlog; returns seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    topic = stack.topic_prefix + records.DATA
    start = datetime.now(UTC) - timedelta(days=7)
    step = timedelta(days=7) / (points // len(devices) + 1)
    started = time.perf_counter()
    try:
        pending = []
        for n in range(points // items):
            device = devices[n % len(devices)]
            message = new_id()
            when = start + step * (n // len(devices) * items)
            value = [
                {
                    "id": derived_id(message, i),
                    "variable": VARIABLES[i % len(VARIABLES)],
                    "value": round(random.uniform(0, 100), 2),
                    "unit": "u",
                    "time": format_time(when + step * i),
                    "group": message,
                    "location": None,
                    "metadata": {"seq": n},
                }
                for i in range(items)
            ]
            envelope = records.Envelope(message_id=message, account="bench", device=device)
            pending.append(
                await producer.send(
                    topic, records.dumps(value), key=device.encode(), headers=envelope.to_headers()
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def measure_storage(stack: Stack, points: int) -> dict[str, Any]:
    stack.add("storage").start()
    proc = stack.processes["storage"]
    metrics_url = proc.health_url.replace("/readyz", "/metrics")
    stack.wait_ready(["storage"], 120)
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        count = written(metrics_url)
        samples.append((time.monotonic(), count))
        if count >= points:
            break
        time.sleep(0.25)
    assert proc.process is not None
    cpu = cpu_seconds(proc.process.pid)
    moving = [s for s in samples if s[1] > 0]
    idle = [s for s in samples if s[1] == 0]
    # From the first sample that saw progress, or (small runs that finish between two
    # samples) from the last sample before any progress.
    (t0, c0) = moving[0] if len(moving) > 1 else (idle[-1] if idle else samples[0])
    (t1, c1) = moving[-1]
    return {
        "bench": "storage_consumer_postgresql",
        "points": int(c1),
        "measured_points": int(c1 - c0),
        "seconds": round(t1 - t0, 2),
        "points_per_s": round((c1 - c0) / (t1 - t0)),
        "storage_cpu_s": round(cpu, 2),
        "points_per_cpu_s": round(c1 / cpu) if cpu else None,
    }


def latency(
    http: httpx.Client, tokens: list[str], params: dict[str, Any], requests: int
) -> dict[str, Any]:
    for _ in range(50):  # warm-up: connections, statement caches
        http.get("/data", params=params, headers={"device-token": random.choice(tokens)})
    times = []
    for _ in range(requests):
        token = random.choice(tokens)
        started = time.perf_counter()
        response = http.get("/data", params=params, headers={"device-token": token})
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    times.sort()
    pick = lambda q: round(times[min(len(times) - 1, int(q * len(times)))] * 1000, 2)  # noqa: E731
    return {
        "requests": requests,
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "mean_ms": round(statistics.fmean(times) * 1000, 2),
    }


async def count_points(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(DataPoint))).scalar_one()
            )
    finally:
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--items", type=int, default=10, help="data items per Kafka record")
    parser.add_argument("--requests", type=int, default=1000, help="requests per read benchmark")
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--kafka", default=None, help="bootstrap servers (default: embedded Tansu)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    broker = None
    if args.kafka is None:
        broker = EmbeddedKafka(log_path=work / "tansu.log")
        broker.start()
        asyncio.run(broker.wait_ready())
        bootstrap = broker.bootstrap
    else:
        bootstrap = args.kafka
    url = asyncio.run(create_database(args.database))
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    asyncio.run(
        bus.ensure_topics(SluiceSettings(kafka_bootstrap=bootstrap), records.TopicNames(prefix))
    )
    stack = Stack(bootstrap, url, prefix, work / "logs", services=())
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    stack.extra_env["SLUICE_KAFKA_FAST_GROUPS"] = "true"
    try:
        tokens = asyncio.run(create_tenant(url, args.devices))
        produced_s = asyncio.run(produce(stack, list(tokens), args.points, args.items))
        result = measure_storage(stack, args.points)
        result.update(
            items_per_record=args.items,
            devices=args.devices,
            produce_s=round(produced_s, 2),
            stored_rows=asyncio.run(count_points(url)),
            cpus=os.cpu_count(),
            load_avg_1m=round(os.getloadavg()[0], 2),
        )
        print(json.dumps(result), flush=True)

        stack.add("api").start()
        stack.wait_ready(["api"], 120)
        with httpx.Client(base_url=stack.api_url, timeout=30) as http:
            for name, params in (
                ("get_data_last_value", {"variable": "temperature", "query": "last_value"}),
                ("get_data_qty_100", {"qty": 100}),
            ):
                figures = latency(http, list(tokens.values()), params, args.requests)
                line = {
                    "bench": name,
                    "stored_points": result["stored_rows"],
                    "devices": args.devices,
                    **figures,
                }
                line["load_avg_1m"] = round(os.getloadavg()[0], 2)
                print(json.dumps(line), flush=True)
    except BaseException:
        print(f"benchmark failed; logs are in {work}", file=sys.stderr)
        raise
    finally:
        stack.stop()
        asyncio.run(drop_database(args.database, url))
        if broker is not None:
            broker.stop()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
