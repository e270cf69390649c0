"""Sluice's MQTT load tool: pre-encoded packets, many connections per process, N processes.

Publishers keep a window of unacknowledged QoS 1/2 publishes; subscribers count what
arrives and measure latency from a timestamp (ns since the epoch) in the first 8 bytes of
each payload. Works against any MQTT 3.1.1 broker (Sluice with tokens, Mosquitto without).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop

from sluice_gateway.codec import Connect, Subscribe, Subscription, encode, encode_publish

STAMP = struct.Struct(">q")


@dataclass
class Target:
    host: str
    port: int
    tokens: list[str] = field(default_factory=list)  # empty: anonymous (Mosquitto)

    def connect_packet(self, client_id: str, index: int) -> bytes:
        token = self.tokens[index % len(self.tokens)] if self.tokens else None
        packet = Connect(
            4,
            client_id,
            keepalive=300,
            username="Token" if token else None,
            password=token.encode() if token else None,
        )
        return encode(packet, 4)


class MqttClient(asyncio.Protocol):
    """A minimal client: CONNECT, optional SUBSCRIBE, then counts what the broker sends."""

    def __init__(self, on_publish: Any = None, on_ack: Any = None) -> None:
        self.transport: Any = None
        self.buffer = bytearray()
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_publish = on_publish
        self.on_ack = on_ack
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        pos = 0
        end = len(buf)
        acks = 0
        while end - pos >= 2:
            first = buf[pos]
            length = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= end:
                    length = -1
                    break
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
            if length < 0 or i + length > end:
                break
            kind = first >> 4
            if kind == 4 or kind == 5:  # PUBACK / PUBREC
                acks += 1
                if kind == 5:
                    self.transport.write(b"\x62\x02" + bytes(buf[i : i + 2]))
            elif kind == 3:
                if self.on_publish is not None:
                    qos = (first >> 1) & 3
                    topic_len = (buf[i] << 8) | buf[i + 1]
                    start = i + 2 + topic_len + (2 if qos else 0)
                    self.on_publish(bytes(buf[start : start + 8]))
                    if qos == 1:
                        self.transport.write(b"\x40\x02" + bytes(buf[i + 2 + topic_len : start]))
            elif kind == 2:
                if buf[i + 1] != 0:
                    self.connected.set_exception(ConnectionError(f"CONNACK {buf[i + 1]}"))
                elif not self.connected.done():
                    self.connected.set_result(None)
            elif kind == 9 and not self.subscribed.done():
                self.subscribed.set_result(None)
            pos = i + length
        del buf[:pos]
        if acks and self.on_ack is not None:
            self.on_ack(acks)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed before CONNACK"))


async def open_client(target: Target, client_id: str, index: int, **handlers: Any) -> MqttClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: MqttClient(**handlers), target.host, target.port
    )
    client.transport.write(target.connect_packet(client_id, index))
    await asyncio.wait_for(client.connected, 30)
    return client


def payload(size: int) -> bytes:
    return STAMP.pack(time.time_ns()) + b"x" * max(0, size - 8)


async def publisher(
    target: Target,
    index: int,
    topic: str,
    qos: int,
    size: int,
    duration: float,
    window: int,
    stats: dict[str, float],
    rate: float = 0.0,
    json_items: bool = False,
) -> None:
    """Publish for ``duration`` seconds keeping ``window`` unacknowledged (QoS > 0).

    ``rate`` (messages/s for this publisher, 0 = as fast as acks allow) paces the sends;
    ``json_items`` sends TagoIO data items whose ``time`` is the publish time, so storage
    latency can be read from the rows (created_at - time).
    """
    inflight = 0
    acked = asyncio.Event()

    def on_ack(n: int) -> None:
        nonlocal inflight
        inflight -= n
        stats["acked"] += n
        acked.set()

    client = await open_client(target, f"pub-{os.getpid()}-{index}", index, on_ack=on_ack)
    body = b"x" * max(0, size - 8)
    topic_b = topic.encode()
    deadline = time.monotonic() + duration
    pid = 0
    write = client.transport.write
    tick = 0.01
    started = time.monotonic()
    sent_here = 0
    while time.monotonic() < deadline:
        if qos:
            while inflight >= window:
                acked.clear()
                await acked.wait()
        burst = window - inflight if qos else 64
        if rate:
            due = int((time.monotonic() - started) * rate) - sent_here
            if due <= 0:
                await asyncio.sleep(tick)
                continue
            burst = min(burst, due) if qos else due
        chunk = []
        now_ns = time.time_ns()
        if json_items:
            body_json = b'{"variable":"bench","value":%d,"time":%d}' % (index, now_ns // 1_000_000)
        stamp = STAMP.pack(now_ns)
        for _ in range(burst):
            pid = pid % 65535 + 1
            data = body_json if json_items else stamp + body
            chunk.append(encode_publish(topic_b, data, qos, False, False, pid if qos else None, 4))
        sent_here += len(chunk)
        inflight += len(chunk) if qos else 0
        stats["sent"] += len(chunk)
        write(b"".join(chunk))
        if not client.can_write.is_set():
            await client.can_write.wait()
        elif not qos:
            await asyncio.sleep(0)
    if qos:
        end = time.monotonic() + 10
        while inflight > 0 and time.monotonic() < end:
            acked.clear()
            try:
                await asyncio.wait_for(acked.wait(), 1)
            except TimeoutError:
                pass
    client.transport.close()


async def subscriber(
    target: Target,
    index: int,
    topic_filter: str,
    qos: int,
    stats: dict[str, float],
    latencies: list[int],
    ready: asyncio.Event | None = None,
) -> MqttClient:
    def on_publish(head: bytes) -> None:
        stats["received"] += 1
        if len(head) == 8 and stats["received"] % 16 == 0:
            latencies.append(time.time_ns() - STAMP.unpack(head)[0])

    client = await open_client(target, f"sub-{os.getpid()}-{index}", index, on_publish=on_publish)
    client.transport.write(encode(Subscribe(1, [Subscription(topic_filter, qos)]), 4))
    await asyncio.wait_for(client.subscribed, 30)
    return client


def _worker(conn: Any, job: dict[str, Any]) -> None:
    uvloop.install()
    result = asyncio.run(_run_job(job))
    conn.send(result)
    conn.close()


async def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    target = Target(job["host"], job["port"], job["tokens"])
    stats: dict[str, float] = {"sent": 0, "acked": 0, "received": 0}
    latencies: list[int] = []
    kind = job["kind"]
    started = time.monotonic()
    if kind == "publish":
        await asyncio.gather(
            *(
                publisher(
                    target,
                    job["first"] + i,
                    job["topic"].format(n=job["first"] + i),
                    job["qos"],
                    job["size"],
                    job["duration"],
                    job["window"],
                    stats,
                    rate=job.get("rate", 0.0),
                    json_items=job.get("json_items", False),
                )
                for i in range(job["count"])
            )
        )
    elif kind == "subscribe":
        clients = []
        for i in range(job["count"]):
            n = job["first"] + i
            clients.append(
                await subscriber(target, n, job["filter"].format(n=n), job["qos"], stats, latencies)
            )
        job["ready"].set()
        await asyncio.sleep(job["hold"])
        for c in clients:
            c.transport.close()
    elif kind == "idle":
        clients = []
        for i in range(job["count"]):
            clients.append(await open_client(target, f"idle-{os.getpid()}-{i}", job["first"] + i))
        stats["connected"] = len(clients)
        stats["connect_seconds"] = time.monotonic() - started
        await asyncio.sleep(job["hold"])
        for c in clients:
            c.transport.close()
    return {"stats": stats, "latencies": latencies, "seconds": time.monotonic() - started}


def start_processes(jobs: list[dict[str, Any]]) -> list[Any]:
    """Start each job in its own process; ``collect`` gathers their results."""
    ctx = mp.get_context("fork")
    running = []
    for job in jobs:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(child, job), daemon=True)
        proc.start()
        running.append((parent, proc))
    return running


def collect(running: list[Any]) -> list[dict[str, Any]]:
    results = [parent.recv() for parent, _ in running]
    for _, proc in running:
        proc.join()
    return results


def new_event() -> Any:
    return mp.get_context("fork").Event()


def run_in_processes(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run each job in its own process; return their results."""
    return collect(start_processes(jobs))


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6  # ms
