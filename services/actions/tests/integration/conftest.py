"""Real servers for the actions' side effects: an HTTP webhook, an SMTP server, and a reader
of the Live Inspector topic; plus a stack whose actions service retries fast."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiosmtpd.controller import Controller

from sluice import bus, records
from sluice.embedded import EmbeddedKafka, free_port
from sluice.settings import SluiceSettings
from sluice.testing.stack import Stack


@dataclass
class Call:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int


class Webhook:
    """A local HTTP server that fails the first ``fail_first`` calls (or while ``failing``),
    can hold calls open until released, and records every call."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.failing = False
        self.hold: threading.Event | None = None
        self.calls: list[Call] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        hold = self.hold
        if hold is not None:
            hold.wait(60)
        with self._lock:
            self.in_flight -= 1
            failed = self.failing or len(self.calls) < self.fail_first
            status = self.fail_status if failed else 200
            split = urlsplit(handler.path)
            self.calls.append(
                Call(
                    split.path,
                    parse_qs(split.query),
                    {k.lower(): v for k, v in handler.headers.items()},
                    json.loads(raw) if raw else None,
                    status,
                )
            )
        body = b'{"error": "try later"}' if failed else b"{}"
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def successes(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.status == 200]

    def all_calls(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Callable[..., Webhook]]:
    made: list[Webhook] = []

    def make(**kwargs: Any) -> Webhook:
        hook = Webhook(**kwargs)
        made.append(hook)
        return hook

    yield make
    for hook in made:
        hook.close()


class Mailbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int = field(default_factory=free_port)
    mailbox: Mailbox = field(default_factory=Mailbox)
    controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """An SMTP server with a reserved port, not started: the test decides when it is up."""
    server = SmtpServer()
    yield server
    server.stop()


class InspectorTail:
    """Every Live Inspector event of one account, read from the stack's topic."""

    def __init__(self, stack: Stack, account: str) -> None:
        self.bootstrap = stack.kafka_bootstrap
        self.topic = stack.topic_prefix + records.INSPECTOR
        self.account = account
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.topic)
            while not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(self.topic)
            consumer.assign([TopicPartition(self.topic, p) for p in partitions])
            await consumer.seek_to_beginning()
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for recs in batch.values():
                    for record in recs:
                        event = records.loads(record.value)
                        if isinstance(event, dict) and event.get("account") == self.account:
                            with self._lock:
                                self.events.append(event)
        finally:
            await consumer.stop()

    def actions(self, action: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e for e in self.events if e.get("type") == "action" and e.get("action") == action
            ]

    def statuses(self, action: str) -> list[str]:
        return [str(e.get("status")) for e in self.actions(action)]

    def wait_status(self, action: str, status: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.statuses(action).count(status) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"inspector: wanted {count}× {status!r} for {action}, "
                    f"saw {self.statuses(action)}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def inspector() -> Iterator[Callable[[Stack, str], InspectorTail]]:
    tails: list[InspectorTail] = []

    def watch(stack: Stack, account: str) -> InspectorTail:
        tail = InspectorTail(stack, account)
        tails.append(tail)
        return tail

    yield watch
    for tail in tails:
        tail.close()


# Retries every 0.2 s doubling up to 1 s: ten attempts take about seven seconds.
FAST_RETRIES = {
    "SLUICE_ACTION_RETRY_BASE": "0.2",
    "SLUICE_ACTION_RETRY_MAX_DELAY": "1",
    "SLUICE_ACTION_CONCURRENCY": "8",
    "SLUICE_ACTION_CONCURRENCY_PER_ACTION": "2",
    "SLUICE_ACTION_HTTP_TIMEOUT": "30",  # held calls must not time out under load
}


@pytest.fixture(scope="module")
def fast_stack(kafka: EmbeddedKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own (no gateway) whose actions service may be killed and retries fast."""
    from sluice_api.migrate import upgrade

    tmp: Path = tmp_path_factory.mktemp("actions-fast")
    url = f"sqlite+aiosqlite:///{tmp / 'sluice.db'}"
    asyncio.run(upgrade(url))
    prefix = f"a{uuid.uuid4().hex[:10]}."
    settings = SluiceSettings(kafka_bootstrap=kafka.bootstrap, topic_partitions=4)
    asyncio.run(bus.ensure_topics(settings, records.TopicNames(prefix)))
    stack = Stack(
        kafka.bootstrap,
        url,
        prefix,
        tmp / "logs",
        services=("storage", "parser", "actions", "api"),
        extra_env=FAST_RETRIES,
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
