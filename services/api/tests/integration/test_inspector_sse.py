"""The Live Inspector over real HTTP: a device's events as Server-Sent Events, within a
second of happening, newest first on connect, only for its own account, and a slow client
that loses (and is told about) events without holding anyone back."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from sluice.embedded import free_port
from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack


@dataclass
class SseEvent:
    name: str
    data: Any
    id: int | None
    at: float  # time.monotonic() when it arrived


class SseReader:
    """Opens ``GET url`` and queues every event; ``paused`` stops reading (a slow client)."""

    def __init__(
        self,
        url: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        receive_buffer: int | None = None,
    ) -> None:
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)] if receive_buffer else []
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(socket_options=options), timeout=httpx.Timeout(30.0)
        )
        self.events: queue.Queue[SseEvent] = queue.Queue()
        self.status: queue.Queue[int] = queue.Queue()
        self.reading = threading.Event()
        self.reading.set()
        self.closed = False
        self.ended = threading.Event()  # the server ended the stream (or it never began)
        self.response: httpx.Response | None = None
        self._thread = threading.Thread(
            target=self._run, args=(url, params or {}, headers or {}), daemon=True
        )
        self._thread.start()

    def _run(self, url: str, params: dict[str, str], headers: dict[str, str]) -> None:
        try:
            with self.client.stream("GET", url, params=params, headers=headers) as response:
                self.response = response
                self.status.put(response.status_code)
                if response.status_code != 200:
                    response.read()
                    self.events.put(SseEvent("error", response.json(), None, time.monotonic()))
                    return
                name, data, ident = "message", None, None
                for line in response.iter_lines():
                    self.reading.wait()
                    if self.closed:
                        return
                    if not line:
                        if data is not None:
                            self.events.put(SseEvent(name, data, ident, time.monotonic()))
                        name, data, ident = "message", None, None
                    elif line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = orjson.loads(line[6:])
                    elif line.startswith("id: "):
                        ident = int(line[4:])
        except (httpx.HTTPError, RuntimeError, ValueError, OSError):
            if not self.closed:
                raise
        finally:
            self.ended.set()

    def status_code(self, timeout: float = 10) -> int:
        return self.status.get(timeout=timeout)

    def next(self, timeout: float = 10) -> SseEvent:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout}s") from None

    def until(
        self, predicate: Callable[[SseEvent], bool], timeout: float = 10
    ) -> tuple[SseEvent, list[SseEvent]]:
        """The first event matching ``predicate``, and every event before it."""
        deadline = time.monotonic() + timeout
        seen: list[SseEvent] = []
        while True:
            event = self.next(max(0.0, deadline - time.monotonic()))
            if predicate(event):
                return event, seen
            seen.append(event)

    def close(self) -> None:
        self.closed = True
        self.reading.set()
        with contextlib.suppress(Exception):
            if self.response is not None:
                self.response.close()
            self.client.close()
        self._thread.join(5)


def is_type(kind: str, **fields: Any) -> Callable[[SseEvent], bool]:
    def match(event: SseEvent) -> bool:
        data = event.data if isinstance(event.data, dict) else {}
        return (
            event.name == "message"
            and data.get("type") == kind
            and all(data.get(k) == v for k, v in fields.items())
        )

    return match


WITHIN = 1.5  # the 1 s requirement, with headroom for a loaded machine


def inspector(stack: Stack, device: str, token: str, **kw: Any) -> SseReader:
    return SseReader(f"{stack.api_url}/device/{device}/inspector", params={"token": token}, **kw)


@pytest.fixture
def tenant(sqlite_stack: Stack) -> dict[str, str]:
    account = sqlite_stack.create_account(f"insp-{uuid.uuid4().hex[:6]}")
    device = sqlite_stack.create_device(account["token"], name="watched", type="mutable")
    return {"account": account["id"], "account_token": account["token"], **device}


def test_publish_appears_within_a_second(sqlite_stack: Stack, tenant: dict[str, str]) -> None:
    reader = inspector(sqlite_stack, tenant["device_id"], tenant["account_token"])
    try:
        assert reader.status_code() == 200
        live, backlog = reader.until(lambda e: e.name == "live")
        assert live.data == {"backlog": len(backlog)}
        client = Client(sqlite_stack.mqtt_port, tenant["token"], client_id="insp-1", version=4)
        assert client.connect() == 0
        connect, _ = reader.until(is_type("connect", client_id="insp-1"))
        assert connect.data["protocol"] == "3.1.1"
        assert connect.data["device"] == tenant["device_id"]

        # The watch announced before `live` is a control event: gateways apply it within
        # 1 s (with headroom); from then on every publish is reported within 1 s.
        time.sleep(max(0.0, live.at + WITHIN - time.monotonic()))
        sent = time.monotonic()
        assert client.publish("sensors/boiler", '{"variable":"t","value":71.5}', qos=1) == 0
        publish, _ = reader.until(is_type("publish", topic="sensors/boiler"), timeout=5)
        assert publish.at - sent < WITHIN
        assert publish.data["qos"] == 1
        assert publish.data["preview"] == '{"variable":"t","value":71.5}'
        assert publish.data["account"] == tenant["account"]
        client.disconnect()
        gone, _ = reader.until(is_type("disconnect", client_id="insp-1"))
        assert gone.data["reason"]
    finally:
        reader.close()


def test_pipeline_steps_show_in_the_inspector(sqlite_stack: Stack, tenant: dict[str, str]) -> None:
    with sqlite_stack.client(tenant["account_token"]) as http:
        parser = "console.log('items', payload.length); payload[0].unit = 'C';"
        assert (
            http.put(f"/device/{tenant['device_id']}", json={"payload_parser": parser}).status_code
            == 200
        )
    action = sqlite_stack.insert_action(tenant["account_token"], tenant["device_id"], "store/#")
    reader = inspector(sqlite_stack, tenant["device_id"], tenant["account_token"])
    try:
        reader.until(lambda e: e.name == "live")
        client = Client(sqlite_stack.mqtt_port, tenant["token"], version=4)
        assert client.connect() == 0
        assert client.publish("store/x", '{"variable":"t","value":1}', qos=1) == 0
        client.disconnect()
        run, _ = reader.until(is_type("action", action=action), timeout=15)
        assert run.data["action_type"] == "insert"
        parsed, _ = reader.until(is_type("parser"), timeout=15)
        assert "items 1" in " ".join(str(line) for line in parsed.data["console"])
        assert parsed.data["output"][0]["unit"] == "C"
    finally:
        reader.close()


def test_backlog_newest_first_resume_and_isolation(
    sqlite_stack: Stack, tenant: dict[str, str]
) -> None:
    device, token = tenant["device_id"], tenant["account_token"]
    first = inspector(sqlite_stack, device, token)
    try:
        first.until(lambda e: e.name == "live")
        client = Client(sqlite_stack.mqtt_port, tenant["token"], version=5)
        assert client.connect() == 0
        for n in range(3):
            assert client.subscribe(f"cmd/{n}", qos=1) == [1]
        last, _ = first.until(is_type("subscribe", topic="cmd/2"))
        client.disconnect()
    finally:
        first.close()

    again = inspector(sqlite_stack, device, token)
    try:
        live, backlog = again.until(lambda e: e.name == "live")
        ids = [e.id for e in backlog]
        assert ids == sorted(ids, reverse=True)  # newest first
        topics = [e.data.get("topic") for e in backlog if e.data["type"] == "subscribe"]
        assert topics[:3] == ["cmd/2", "cmd/1", "cmd/0"]
        assert live.data == {"backlog": len(backlog)}
    finally:
        again.close()

    assert last.id is not None
    resumed = SseReader(
        f"{sqlite_stack.api_url}/device/{device}/inspector",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": str(last.id - 1)},
    )
    try:
        _, backlog = resumed.until(lambda e: e.name == "live")
        assert [e.id for e in backlog if e.id is not None and e.id <= last.id] == [last.id]
    finally:
        resumed.close()

    other_device = sqlite_stack.create_device(token, name="quiet")["device_id"]
    quiet = inspector(sqlite_stack, other_device, token)
    try:
        live, backlog = quiet.until(lambda e: e.name == "live")
        assert backlog == []  # events belong to their own device
    finally:
        quiet.close()

    stranger = sqlite_stack.create_account("stranger")
    for reader, status, fragment in (
        (inspector(sqlite_stack, device, stranger["token"]), 404, f"Device {device} not found"),
        (inspector(sqlite_stack, device, "wrong"), 401, "Invalid account token"),
        (SseReader(f"{sqlite_stack.api_url}/device/{device}/inspector"), 401, "Authorization"),
    ):
        try:
            assert reader.status_code() == status
            error = reader.next()
            assert error.data["status"] is False
            assert fragment in error.data["message"]
        finally:
            reader.close()


async def flood(stack: Stack, account: str, device: str, count: int) -> None:
    """Inspector events for one device, as fast as the services could emit them."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, linger_ms=20)
    await producer.start()
    try:
        topic = stack.topic_prefix + "inspector"
        pad = "x" * 1000
        for n in range(count):
            event = {"type": "console", "account": account, "device": device, "n": n, "pad": pad}
            await producer.send(topic, orjson.dumps(event), key=device.encode())
        marker = {"type": "marker", "account": account, "device": device}
        await producer.send_and_wait(topic, orjson.dumps(marker), key=device.encode())
    finally:
        await producer.stop()


def dropped_total(stack: Stack) -> float:
    text = httpx.get(f"{stack.api_url}/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "sluice_api_inspector_dropped":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("sluice_api_inspector_dropped_total is not exported")


def accounted(events: list[SseEvent]) -> tuple[int, int]:
    """(events delivered, events reported dropped)."""
    delivered = sum(1 for e in events if is_type("console")(e))
    dropped = sum(e.data["dropped"] for e in events if e.name == "dropped")
    return delivered, dropped


def test_slow_client_drops_are_counted_and_hold_nobody_back(
    sqlite_stack: Stack, tenant: dict[str, str]
) -> None:
    # ~1.2 kB frames: the kernel buffers hold at most ~4.2 MB (tcp_wmem max + the small
    # receive buffer below), the API queues 1000 more; the rest must be dropped and counted.
    count = 8_000
    device, token = tenant["device_id"], tenant["account_token"]
    before = dropped_total(sqlite_stack)
    slow = inspector(sqlite_stack, device, token, receive_buffer=65536)
    fast = inspector(sqlite_stack, device, token)
    try:
        slow.until(lambda e: e.name == "live")
        slow.reading.clear()  # stops reading: the kernel buffers fill, then the API's queue
        fast.until(lambda e: e.name == "live")
        asyncio.run(flood(sqlite_stack, tenant["account"], device, count))

        _, fast_events = fast.until(is_type("marker"), timeout=60)
        delivered, dropped = accounted(fast_events)
        assert delivered + dropped == count  # every event is either shown or counted

        slow.reading.set()
        _, slow_events = slow.until(is_type("marker"), timeout=60)
        delivered, dropped = accounted(slow_events)
        assert dropped > 0
        assert delivered + dropped == count
        last = [e.data["n"] for e in slow_events if is_type("console")(e)][-1]
        assert last == count - 1  # the newest events are the ones kept
        assert dropped_total(sqlite_stack) - before >= dropped
    finally:
        slow.close()
        fast.close()


def test_every_api_process_streams_every_event_and_ends_streams_on_sigterm(
    sqlite_stack: Stack, tenant: dict[str, str]
) -> None:
    port = free_port()
    extra = sqlite_stack.add("api-inspector", SLUICE_API_PORT=str(port))
    extra.start()
    try:
        sqlite_stack.wait_ready(["api-inspector"])
        device, token = tenant["device_id"], tenant["account_token"]
        here = inspector(sqlite_stack, device, token)
        there = SseReader(f"http://127.0.0.1:{port}/device/{device}/inspector", {"token": token})
        for reader in (here, there):
            reader.until(lambda e: e.name == "live")
        client = Client(sqlite_stack.mqtt_port, tenant["token"], client_id="both", version=4)
        assert client.connect() == 0
        client.disconnect()
        for reader in (here, there):
            reader.until(is_type("connect", client_id="both"))
        here.close()

        stopping = time.monotonic()
        assert extra.process is not None
        extra.process.send_signal(signal.SIGTERM)
        assert there.ended.wait(5)  # the stream ends at once instead of holding the shutdown
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert extra.process.wait(10) in (0, -signal.SIGTERM)
        assert time.monotonic() - stopping < 8  # well before uvicorn's 10 s graceful timeout
        there.close()
    finally:
        sqlite_stack.processes.pop("api-inspector").stop()
