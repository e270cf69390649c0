"""The Live Inspector hub: tails ``sluice.inspector``, keeps the last events per device and
fans them out to Server-Sent-Event streams.

Every API process reads the whole inspector topic (no consumer group), so a stream on
any process sees every event. A slow client never holds the others back: each stream
has a bounded buffer and the oldest queued events are dropped (and counted) first.
While a device has a watcher, the hub announces it on ``sluice.control`` so gateways
emit an event per publish of that device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from sluice import config, records
from sluice_api.observability import (
    inspector_dropped,
    inspector_events,
    inspector_watched,
    sse_clients,
)

log = logging.getLogger("sluice.api.inspector")

INSPECTOR_WATCH = config.INSPECTOR_WATCH

Announce = Callable[[str, int], Awaitable[None]]  # (device, until epoch ms)


class EventTail(Protocol):
    async def start(self, stop: asyncio.Event | None = None) -> None: ...

    def batches(self, stop: asyncio.Event, poll_ms: int = 100) -> AsyncIterator[list[Any]]: ...

    async def stop(self) -> None: ...


@dataclass(slots=True)
class InspectorEvent:
    seq: int
    account: str
    frame: bytes  # the whole SSE frame, encoded once for every watcher


class Subscription:
    """One open stream: a bounded queue of frames and how many were dropped."""

    def __init__(self, account: str, device: str, capacity: int) -> None:
        self.account = account
        self.device = device
        self.queue: deque[InspectorEvent] = deque()
        self.capacity = capacity
        self.dropped = 0
        self.wakeup = asyncio.Event()

    def offer(self, event: InspectorEvent) -> None:
        if len(self.queue) >= self.capacity:
            self.queue.popleft()  # a live view wants the newest events
            self.dropped += 1
            inspector_dropped.inc()
        self.queue.append(event)
        self.wakeup.set()

    def take(self) -> list[InspectorEvent]:
        items = list(self.queue)
        self.queue.clear()
        self.wakeup.clear()
        return items


@dataclass
class InspectorHub:
    announce: Announce
    history: int = 50
    client_buffer: int = 1000
    max_devices: int = 10_000
    watch_ttl: float = 60.0
    watch_every: float = 20.0
    keepalive: float = 15.0
    assigned: bool = False
    closing: bool = False
    _seq: int = 0
    _recent: OrderedDict[str, deque[InspectorEvent]] = field(default_factory=OrderedDict)
    _subs: dict[str, set[Subscription]] = field(default_factory=dict)

    # -- reading the topic --------------------------------------------------------
    def ingest(self, value: bytes | None) -> None:
        """Take one record of ``sluice.inspector``: remember it and hand it to watchers."""
        inspector_events.inc()
        try:
            event = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        device, account = event.get("device"), event.get("account")
        if not device or not account or not isinstance(device, str):
            return  # e.g. a failed login: no device, nobody's to show
        self._seq += 1
        item = InspectorEvent(
            self._seq,
            str(account),
            b"id: %d\ndata: %s\n\n" % (self._seq, orjson.dumps(event)),
        )
        recent = self._recent.get(device)
        if recent is None:
            recent = self._recent[device] = deque(maxlen=self.history)
            if len(self._recent) > self.max_devices:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(device)
        recent.append(item)
        for sub in self._subs.get(device, ()):
            if sub.account == item.account:
                sub.offer(item)

    async def run(self, tail: EventTail, stop: asyncio.Event) -> None:
        """Tail the topic and keep announcing watched devices, until ``stop``."""
        await tail.start(stop)
        self.assigned = True
        log.info("live inspector is reading the inspector topic")
        try:
            await asyncio.gather(self._consume(tail, stop), self._keep_announcing(stop))
        finally:
            self.assigned = False
            await tail.stop()

    async def _consume(self, tail: EventTail, stop: asyncio.Event) -> None:
        async for batch in tail.batches(stop):
            for record in batch:
                self.ingest(record.value)

    def shutdown(self) -> None:
        """End every stream now (the process is stopping); clients reconnect elsewhere."""
        self.closing = True
        for watchers in self._subs.values():
            for sub in watchers:
                sub.wakeup.set()

    def ready(self) -> str | None:
        return None if self.assigned else "live inspector is not reading its topic yet"

    # -- watchers -----------------------------------------------------------------
    def backlog(self, account: str, device: str, after: int = 0) -> list[InspectorEvent]:
        """The device's last events for this account, newest first."""
        recent = self._recent.get(device, ())
        return [e for e in reversed(recent) if e.account == account and e.seq > after]

    async def open(self, account: str, device: str) -> Subscription:
        sub = Subscription(account, device, self.client_buffer)
        watchers = self._subs.setdefault(device, set())
        first = not watchers
        watchers.add(sub)
        sse_clients.inc()
        inspector_watched.set(len(self._subs))
        if first:
            await self._announce(device)
        return sub

    def close(self, sub: Subscription) -> None:
        watchers = self._subs.get(sub.device)
        if watchers is None or sub not in watchers:
            return
        watchers.discard(sub)
        sse_clients.dec()
        if not watchers:
            # No "unwatch": another API process may watch the same device, and the
            # gateways forget a watch by itself once its ``until`` has passed.
            del self._subs[sub.device]
        inspector_watched.set(len(self._subs))

    async def _announce(self, device: str) -> None:
        until = records.now_ms() + int(self.watch_ttl * 1000)
        try:
            await self.announce(device, until)
        except Exception as exc:
            log.warning(
                "inspector watch not announced", extra={"device": device, "error": str(exc)}
            )

    async def _keep_announcing(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.watch_every)
            except TimeoutError:
                await asyncio.gather(*(self._announce(d) for d in list(self._subs)))

    # -- the stream ---------------------------------------------------------------
    async def stream(self, account: str, device: str, after: int = 0) -> AsyncIterator[bytes]:
        """SSE frames: the backlog (newest first), a ``live`` marker, then live events.

        The watch is announced before the marker, so once a client sees ``live`` the
        gateways are being told to report every publish of the device.
        """
        sub = await self.open(account, device)
        try:
            backlog = self.backlog(account, device, after)
            marker = b"event: live\ndata: %s\n\n" % orjson.dumps({"backlog": len(backlog)})
            yield b"".join(e.frame for e in backlog) + marker
            reported = 0
            last_write = time.monotonic()
            while not self.closing:
                if not sub.queue:
                    wait = max(0.0, self.keepalive - (time.monotonic() - last_write))
                    try:
                        await asyncio.wait_for(sub.wakeup.wait(), wait)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        last_write = time.monotonic()
                        continue
                    if self.closing:
                        break
                events = sub.take()
                notice = b""
                if sub.dropped > reported:
                    dropped = {"dropped": sub.dropped - reported, "total_dropped": sub.dropped}
                    notice = b"event: dropped\ndata: %s\n\n" % orjson.dumps(dropped)
                    reported = sub.dropped
                yield notice + b"".join(e.frame for e in events)
                last_write = time.monotonic()
        finally:
            self.close(sub)
