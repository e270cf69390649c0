"""Payloads per second through one parser service process, end to end over Kafka.

    .venv/bin/python services/parser/bench/parser_service_bench.py [--count 100000]

Starts an embedded Tansu (or uses --kafka), a migrated SQLite database holding devices whose
payload parser is a typical 30-line Buffer decoder, and one `python -m sluice_parser` child
process (--processes N: N of them in one consumer group). Produces --count binary MQTT
ingest records (as the actions service does for an insert action; device param
payload_type=hex), then measures from the first produced record until the parser has
committed them all (it commits a batch once its data records are acknowledged); it then
checks that as many data records are on the data topic. Prints one
JSON line; the parser's and the broker's CPU time are read from /proc, so
`payloads_per_cpu_s` means something on a busy machine too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sluice import bus, records
from sluice.batching import BatchProducer, Output
from sluice.db import create_engine, session_factory
from sluice.db.models import Account, Device, DeviceParam
from sluice.embedded import EmbeddedKafka, free_port
from sluice.ids import new_id
from sluice.settings import SluiceSettings
from sluice_api.migrate import upgrade

# An environmental sensor: 12-byte uplink, five readings plus an alarm flag.
DECODER = r"""
const frame = payload.find(
  (x) => x.variable === "payload" || x.variable === "payload_raw" || x.variable === "data",
);
if (frame) {
  try {
    const buffer = Buffer.from(frame.value, "hex");
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
    payload = data.map((x) => ({
      ...x,
      group: frame.group,
      time: frame.time,
      metadata: frame.metadata,
    }));
  } catch (e) {
    console.error(e.message);
    payload = [{ variable: "parse_error", value: e.message }];
  }
}
"""


# --parser: what the devices run. The decoder is the figure the issue asks for; the other two
# show what the service costs around the parser (Kafka, normalisation, validation, the
# sandbox's fixed cost per run), so what no parser of any kind could go past on the machine.
PARSERS: dict[str, tuple[str | None, float]] = {  # name -> (code, items stored per payload)
    "decoder": (DECODER, 5.5),
    "pass-through": ("payload = payload;", 1.0),
    "none": (None, 1.0),
}


async def create_devices(
    database_url: str, count: int, parser_code: str | None = DECODER
) -> tuple[str, list[str]]:
    """(account id, device ids): devices with the parser and payload_type=hex."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            account = Account(id=new_id(), name="bench", plan="scale")
            session.add(account)
            await session.flush()
            ids = []
            for index in range(count):
                device = Device(
                    id=new_id(),
                    account_id=account.id,
                    name=f"sensor-{index}",
                    type="immutable",
                    payload_parser=parser_code,
                    chunk_period="month",
                    chunk_retention=12,
                )
                session.add(device)
                await session.flush()
                session.add(
                    DeviceParam(id=new_id(), device_id=device.id, key="payload_type", value="hex")
                )
                ids.append(device.id)
            await session.commit()
            return account.id, ids
    finally:
        await engine.dispose()


def ingest_records(
    devices: list[str], account: str, count: int, seed: int
) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    rng = random.Random(seed)
    out = []
    for index in range(count):
        device = devices[index % len(devices)]
        envelope = records.Envelope(
            message_id=new_id(),
            account=account,
            device=device,
            topic="sensors/env",
            qos=1,
            origin="bench",
            kind=records.KIND_MQTT,
        )
        frame = rng.randbytes(11) + bytes([index & 1])
        out.append((device.encode(), frame, envelope.to_headers()))
    return out


async def produce(
    bootstrap: str, topic: str, batch: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Per-partition batches (as the actions service's output would arrive), fast enough not
    to be what is measured."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        outputs = [Output(topic, key, value, headers) for key, value, headers in batch]
        for start in range(0, len(outputs), 5000):
            await BatchProducer(producer, "bench").send(outputs[start : start + 5000])
    finally:
        await producer.stop()


async def committed_until(
    group: AIOKafkaConsumer, partitions: list[TopicPartition], wanted: int, timeout: float
) -> float:
    """Wait until the parser's group has committed ``wanted`` ingest offsets (a batch is
    committed once its outputs are acknowledged); the monotonic time it was seen. Polling
    the group's offsets costs next to nothing, unlike decoding every data record, which on
    a small machine would take CPU from the service being measured."""
    deadline = time.monotonic() + timeout
    while True:
        committed = 0
        for tp in partitions:
            committed += await group.committed(tp) or 0
        if committed >= wanted:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {committed} of {wanted} ingest offsets committed")
        await asyncio.sleep(0.01)


async def count_until(consumer: AIOKafkaConsumer, wanted: int, timeout: float) -> float:
    """Wait until ``wanted`` records arrived; the monotonic time when the last one did."""
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen} of {wanted} data records within {timeout:g} s")
        batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
        seen += sum(len(recs) for recs in batch.values())
    return time.monotonic()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each of the process's threads ("main": the event loop's)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        name = "main" if task.name == str(pid) else task.name
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def start_service(env: dict[str, str], log_path: Path, profile: str | None) -> Any:
    command = [sys.executable, "-m", "sluice_parser"]
    if profile:
        spy = Path(sys.executable).with_name("py-spy")
        command = [
            str(spy),
            "record",
            "--threads",
            "--rate",
            "250",
            "--format",
            "raw",
            "-o",
            profile,
            "--",
            *command,
        ]
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def service_pid(pid: int, profiled: bool) -> int:
    """The service's own process (under py-spy, its child)."""
    if not profiled:
        return pid
    return int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the parser service exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit("the parser service was not ready in time")


async def run_bench(
    args: argparse.Namespace, bootstrap: str, workdir: Path, broker_pid: int | None = None
) -> dict[str, Any]:
    database_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await upgrade(database_url)
    code, items_per_payload = PARSERS[args.parser]
    account, devices = await create_devices(database_url, args.devices, code)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topics = records.TopicNames(prefix)
    settings = SluiceSettings(kafka_bootstrap=bootstrap, topic_partitions=args.partitions)
    await bus.ensure_topics(settings, topics)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(
        SLUICE_KAFKA_BOOTSTRAP=bootstrap,
        SLUICE_DATABASE_URL=database_url,
        SLUICE_TOPIC_PREFIX=prefix,
        SLUICE_KAFKA_FAST_GROUPS="true",
        SLUICE_HEALTH_HOST="127.0.0.1",
        SLUICE_LOG_LEVEL="WARNING",
        SLUICE_PARSER_WORKERS=str(args.workers),
    )
    # One process, or several in one consumer group (sharing the partitions).
    ports = [free_port() for _ in range(args.processes)]
    procs = [
        start_service({**env, "SLUICE_HEALTH_PORT": str(port)}, workdir / "parser.log", profile)
        for port, profile in zip(ports, [args.profile] + [None] * (args.processes - 1), strict=True)
    ]
    proc = procs[0]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_bytes=2**25)
    # Reads the parser group's committed offsets; it never joins the group.
    group = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id="sluice-parser", enable_auto_commit=False
    )
    ingest = [TopicPartition(topics.ingest, p) for p in range(args.partitions)]
    pids = [one.pid for one in procs]
    try:
        for port, one in zip(ports, procs, strict=True):
            wait_ready(f"http://127.0.0.1:{port}/readyz", one)
        await consumer.start()
        await group.start()
        partitions = [TopicPartition(topics.data, p) for p in range(args.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)

        # Warm up: the device lookups, the compiled decoder, the producer's metadata.
        warm = ingest_records(devices, account, args.warmup, seed=1)
        await produce(bootstrap, topics.ingest, warm)
        await count_until(consumer, len(warm), args.timeout)
        await committed_until(group, ingest, len(warm), args.timeout)

        batch = ingest_records(devices, account, args.count, seed=2)
        pids[0] = service_pid(proc.pid, bool(args.profile))  # under py-spy: its child
        cpu_before = sum(cpu_seconds(one) for one in pids)
        threads_before = thread_cpu_seconds(pids[0])
        broker_before = cpu_seconds(broker_pid) if broker_pid else 0.0
        started = time.monotonic()
        await produce(bootstrap, topics.ingest, batch)
        produced = time.monotonic()
        finished = await committed_until(group, ingest, len(warm) + len(batch), args.timeout)
        cpu = sum(cpu_seconds(one) for one in pids) - cpu_before
        threads = {
            name: round(seconds - threads_before.get(name, 0.0), 2)
            for name, seconds in thread_cpu_seconds(pids[0]).items()
        }
        broker_cpu = cpu_seconds(broker_pid) - broker_before if broker_pid else None
        # Every payload became a data record (counted after the clock stopped).
        await count_until(consumer, len(batch), args.timeout)
    except TimeoutError as exc:
        tail = (workdir / "parser.log").read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"{exc}; the parser's log ends with:\n" + "\n".join(tail)) from None
    finally:
        await consumer.stop()
        await group.stop()
        for one_pid in pids:
            os.kill(one_pid, signal.SIGTERM)  # under py-spy: the service; py-spy then writes
        for one in procs:
            one.wait(60)
    elapsed = finished - started
    return {
        "bench": "parser_service",
        "payloads": args.count,
        "devices": args.devices,
        "partitions": args.partitions,
        "processes": args.processes,
        "workers": args.workers,
        "parser": args.parser,
        "items_per_payload": items_per_payload,
        "seconds": round(elapsed, 3),
        "produce_seconds": round(produced - started, 3),
        "payloads_per_s": round(args.count / elapsed),
        "parser_cpu_seconds": round(cpu, 2),
        "payloads_per_cpu_s": round(args.count / cpu) if cpu else None,
        # of the first process: the event loop's thread, then the busiest others (the parser
        # threads)
        "thread_cpu_seconds": [
            threads.pop("main", 0.0),
            *sorted((cpu for cpu in threads.values() if cpu), reverse=True),
        ],
        "broker_cpu_seconds": None if broker_cpu is None else round(broker_cpu, 2),
        "load_avg_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument(
        "--workers", type=int, default=2, help="SLUICE_PARSER_WORKERS (the default on 2 CPUs)"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="parser processes in the consumer group"
    )
    parser.add_argument(
        "--profile", help="record the (first) service process with py-spy into this file"
    )
    parser.add_argument(
        "--parser",
        choices=sorted(PARSERS),
        default="decoder",
        help="the devices' parser: the 30-line decoder (default), a pass-through script, or "
        "none (normalisation and validation only)",
    )
    parser.add_argument("--kafka", help="bootstrap servers (default: start an embedded Tansu)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        workdir = Path(tmp)
        if args.kafka:
            result = asyncio.run(run_bench(args, args.kafka, workdir))
        else:
            with EmbeddedKafka(log_path=workdir / "tansu.log") as kafka:
                asyncio.run(kafka.wait_ready())
                broker = kafka.process.pid if kafka.process else None
                result = asyncio.run(run_bench(args, kafka.bootstrap, workdir, broker))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
