"""MQTT QoS 1 load that knows the fate of every message it sends.

Each message carries a sequence number (``{"variable": "seq", "value": n}``). The ledger
records how often each one was transmitted, whether (and on which transmission) it was
acknowledged, and why it was sent again: a client resends its unacknowledged publishes after
every reconnect, as MQTT QoS 1 asks, and the cause of the connection loss before the resend
is noted. Row counts per sequence number then give lost and duplicated messages by cause.

Built on the gateway's own codec (``sluice_gateway.codec``): pre-encoded packets, one asyncio
stream per client, MQTT 3.1.1 or 5.0, persistent sessions, reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sluice_gateway.codec import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Properties,
    ProtocolError,
    Puback,
    StreamDecoder,
    encode,
    encode_publish,
)

GATEWAY_CRASH = "gateway crash"
CLIENT_RECONNECT = "client reconnect"
UNEXPECTED = "unexpected disconnect"
NO_RESEND = "no resend (replay inside the pipeline)"


def seq_payload(seq: int) -> bytes:
    return b'{"variable":"seq","value":%d}' % seq


@dataclass
class Ledger:
    """What happened to every message of a load, shared by its clients."""

    transmissions: dict[int, int] = field(default_factory=dict)
    first_sent: dict[int, float] = field(default_factory=dict)
    acked: dict[int, int] = field(default_factory=dict)  # seq → transmissions when acked
    acked_at: dict[int, float] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)  # seq → MQTT 5 reason code
    resend_causes: dict[int, set[str]] = field(default_factory=dict)
    drops: Counter[str] = field(default_factory=Counter)
    server_disconnects: Counter[int] = field(default_factory=Counter)
    stray_acks: int = 0
    _seq: Any = field(default_factory=lambda: itertools.count(1))

    def new(self) -> int:
        seq: int = next(self._seq)
        self.transmissions[seq] = 1
        self.first_sent[seq] = time.monotonic()
        return seq

    def resent(self, seq: int, cause: str) -> None:
        self.transmissions[seq] += 1
        self.resend_causes.setdefault(seq, set()).add(cause)

    def ack(self, seq: int, code: int) -> None:
        if code >= 0x80:
            self.refused[seq] = code
        elif seq not in self.acked:
            self.acked[seq] = self.transmissions[seq]
            self.acked_at[seq] = time.monotonic()

    @property
    def sent(self) -> int:
        return len(self.transmissions)

    def unacked(self) -> list[int]:
        return [s for s in self.transmissions if s not in self.acked and s not in self.refused]

    def first_sent_between(self, start: float, end: float = float("inf")) -> list[int]:
        return [s for s, t in self.first_sent.items() if start <= t < end]

    def acked_between(self, start: float, end: float = float("inf")) -> list[int]:
        return [s for s, t in self.acked_at.items() if start <= t < end]


@dataclass
class Outcome:
    """A ledger judged against the rows storage holds (``rows``: sequence number → rows)."""

    sent: int
    acked: int
    stored: int  # distinct messages with at least one row
    rows: int
    lost: list[int]  # acknowledged, no row
    unacked_missing: int  # never acknowledged and not stored (allowed: QoS 1 promises nothing)
    phantom: list[int]  # rows for sequence numbers never sent
    duplicates: dict[str, int]  # extra rows by cause
    duplicated_messages: dict[str, int]  # messages with more than one row, by cause
    first_ack_duplicated: list[int]  # acknowledged on the first transmission, stored twice
    resent: int  # messages transmitted more than once

    def figures(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "stored": self.stored,
            "rows": self.rows,
            "lost": len(self.lost),
            "resent": self.resent,
            "unacked and not stored": self.unacked_missing,
            "duplicates (extra rows) by cause": dict(self.duplicates) or 0,
            "acked on 1st transmission yet duplicated": len(self.first_ack_duplicated),
        }


def dup_cause(ledger: Ledger, seq: int) -> str:
    causes = ledger.resend_causes.get(seq)
    if not causes or ledger.transmissions.get(seq, 1) == 1:
        return NO_RESEND
    for cause in (GATEWAY_CRASH, CLIENT_RECONNECT):
        if cause in causes:
            return f"resent after {cause}"
    return "resent after " + "/".join(sorted(causes))


def judge(ledger: Ledger, rows: Counter[int]) -> Outcome:
    duplicates: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    for seq, n in rows.items():
        if n > 1 and seq in ledger.transmissions:
            cause = dup_cause(ledger, seq)
            duplicates[cause] += n - 1
            duplicated[cause] += 1
    return Outcome(
        sent=ledger.sent,
        acked=len(ledger.acked),
        stored=sum(1 for s in ledger.transmissions if rows.get(s)),
        rows=sum(n for s, n in rows.items() if s in ledger.transmissions),
        lost=sorted(s for s in ledger.acked if not rows.get(s)),
        unacked_missing=sum(1 for s in ledger.unacked() if not rows.get(s)),
        phantom=sorted(s for s in rows if s not in ledger.transmissions),
        duplicates=dict(duplicates),
        duplicated_messages=dict(duplicated),
        first_ack_duplicated=sorted(
            s for s, t in ledger.acked.items() if t == 1 and rows.get(s, 0) > 1
        ),
        resent=sum(1 for t in ledger.transmissions.values() if t > 1),
    )


class LoadClient:
    """One device publishing QoS 1 messages with a window of unacknowledged ones.

    ``producing()`` says whether to start new messages; the client keeps (re)connecting until
    it is false and every message it started is acknowledged, or until ``stop`` is set.
    ``cause_of_drop()`` names a lost connection the client did not end itself.
    """

    def __init__(
        self,
        name: str,
        port: int,
        token: str,
        ledger: Ledger,
        *,
        producing: Callable[[], bool],
        cause_of_drop: Callable[[], str] = lambda: UNEXPECTED,
        topic: str = "chaos/seq",
        version: int = 4,
        window: int = 32,
        rate: float = 0.0,
        keepalive: int = 30,
        voluntary_drops: tuple[float, float] | None = None,
        rng: random.Random | None = None,
        host: str = "127.0.0.1",
        payload: Callable[[int], bytes] = seq_payload,
    ) -> None:
        self.name, self.port, self.token, self.ledger = name, port, token, ledger
        self.producing, self.cause_of_drop = producing, cause_of_drop
        self.topic = topic.encode()
        self.version, self.window, self.rate = version, window, rate
        self.keepalive, self.voluntary_drops = keepalive, voluntary_drops
        self.rng = rng or random.Random()
        self.host, self.payload = host, payload
        self.inflight: dict[int, int] = {}  # packet id → seq, in send order
        self._pid = 0
        self._space = asyncio.Event()
        self.connected = asyncio.Event()
        self.connects = 0
        self.connect_failures = 0
        self.connack_refusals: Counter[int] = Counter()
        self._resend_cause: str | None = None
        self._next_send = 0.0
        self._next_drop = 0.0
        self.error: BaseException | None = None

    # -- public -------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        self._next_send = time.monotonic()
        self._schedule_drop()
        while not stop.is_set() and not self._finished():
            connects = self.connects
            try:
                cause = await self._connection(stop)
            except (OSError, TimeoutError, ProtocolError, ConnectionError) as exc:
                self.error = exc
                cause = self.cause_of_drop()
            finally:
                self.connected.clear()
            if cause == "done" or stop.is_set():
                break
            if self.connects == connects:  # never got in: try again, the cause stays
                self.connect_failures += 1
                backoff = min(backoff * 2, 1.0)
            else:
                self.ledger.drops[cause] += 1
                self._resend_cause = cause
                backoff = 0.1
            await _sleep_or_stop(stop, backoff * (0.5 + self.rng.random()))

    # -- one connection ------------------------------------------------------------
    def _finished(self) -> bool:
        return not self.producing() and not self.inflight

    def _schedule_drop(self) -> None:
        if self.voluntary_drops:
            self._next_drop = time.monotonic() + self.rng.uniform(*self.voluntary_drops)

    def _connect_packet(self) -> bytes:
        props = Properties(session_expiry_interval=300) if self.version == 5 else None
        packet = Connect(
            self.version,
            self.name,
            clean_start=False,
            keepalive=self.keepalive,
            username="Token",
            password=self.token.encode(),
            properties=props,
        )
        return encode(packet, self.version)

    def _publish(self, pid: int, seq: int, dup: bool) -> bytes:
        return encode_publish(self.topic, self.payload(seq), 1, False, dup, pid, self.version)

    def _new_publish(self) -> bytes:
        seq = self.ledger.new()
        pid = self._alloc()
        self.inflight[pid] = seq
        return self._publish(pid, seq, False)

    def _alloc(self) -> int:
        while True:
            self._pid = self._pid % 65535 + 1
            if self._pid not in self.inflight:
                return self._pid

    async def _connection(self, stop: asyncio.Event) -> str:
        """One connection's life; returns why it ended ("done" when the work is over)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)
        decoder = StreamDecoder(protocol_level=self.version)
        try:
            writer.write(self._connect_packet())
            connack = await asyncio.wait_for(self._connack(reader, decoder), 15)
            if connack.reason_code != 0:
                self.connack_refusals[connack.reason_code] += 1
                raise ConnectionError(f"CONNACK {connack.reason_code:#x}")
            self.connects += 1
            self.connected.set()
            cause = self._resend_cause or UNEXPECTED
            if self.inflight:  # unacknowledged: the broker may or may not have them
                writer.write(
                    b"".join(self._publish(pid, seq, True) for pid, seq in self.inflight.items())
                )
                for seq in self.inflight.values():
                    self.ledger.resent(seq, cause)
            self._resend_cause = None
            reading = asyncio.ensure_future(self._read(reader, decoder))
            try:
                return await self._send(writer, reading, stop)
            finally:
                if not reading.done():
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reading
        finally:
            writer.transport.abort()

    async def _connack(self, reader: asyncio.StreamReader, decoder: StreamDecoder) -> Connack:
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed before CONNACK")
            for packet in decoder.feed(data):
                if isinstance(packet, Connack):
                    return packet

    async def _read(self, reader: asyncio.StreamReader, decoder: StreamDecoder) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for packet in decoder.feed(data):
                if isinstance(packet, Puback):
                    seq = self.inflight.pop(packet.packet_id, None)
                    if seq is None:
                        self.ledger.stray_acks += 1
                    else:
                        self.ledger.ack(seq, packet.reason_code)
                    self._space.set()
                elif isinstance(packet, Disconnect):
                    self.ledger.server_disconnects[packet.reason_code] += 1

    async def _send(
        self, writer: asyncio.StreamWriter, reading: asyncio.Future[None], stop: asyncio.Event
    ) -> str:
        last_write = time.monotonic()
        interval = 1.0 / self.rate if self.rate else 0.0
        while not reading.done():
            if stop.is_set():
                return "done"
            now = time.monotonic()
            if self.voluntary_drops and now >= self._next_drop and self.producing():
                # Vanish right after a burst, before its PUBACKs: the broker may or may not
                # have taken those publishes, and they are resent after the reconnect.
                self._schedule_drop()
                room = min(8, self.window - len(self.inflight))
                writer.write(b"".join(self._new_publish() for _ in range(room)))
                self._resend_cause = CLIENT_RECONNECT
                return CLIENT_RECONNECT
            if not self.producing() and not self.inflight:
                writer.write(encode(Disconnect(), self.version))
                await writer.drain()
                return "done"
            burst = []
            while self.producing() and len(self.inflight) < self.window:
                if interval and now < self._next_send:
                    break
                burst.append(self._new_publish())
                if interval:
                    # Behind schedule (a reconnect): catch up at most one window at once.
                    self._next_send = max(self._next_send + interval, now - interval * self.window)
            if burst:
                writer.write(b"".join(burst))
                last_write = now
            elif now - last_write > self.keepalive / 3:
                writer.write(encode(Pingreq(), self.version))
                last_write = now
            await asyncio.wait_for(writer.drain(), None)
            self._space.clear()
            wait = 0.05
            if interval and len(self.inflight) < self.window and self.producing():
                wait = max(0.0, min(wait, self._next_send - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._space.wait(), wait)
        return self.cause_of_drop()


async def _sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
