"""MQTT session state, separate from any socket.

A session outlives its connection when the client asked for it (clean session false /
session expiry > 0): subscriptions, QoS 1/2 messages in flight and a bounded queue stay
here and are redelivered (DUP) when the client comes back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice_gateway.codec import Properties


class Message:
    """An application message being routed (what every subscriber gets a copy of)."""

    __slots__ = ("expires_at", "payload", "props", "qos", "retain", "topic")

    def __init__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool = False,
        props: Properties | None = None,
        expires_at: float | None = None,
    ) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.props = props  # forwardable MQTT 5 properties (no alias, no subscription ids)
        self.expires_at = expires_at  # monotonic deadline from the message expiry interval

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.monotonic()) >= self.expires_at


class Link(Protocol):
    """What a session needs from the connection it is attached to."""

    receive_maximum: int

    def send_publish(
        self,
        msg: Message,
        qos: int,
        retain: bool,
        sub_ids: Sequence[int],
        packet_id: int | None,
        dup: bool,
    ) -> bool: ...

    def send_pubrel(self, packet_id: int) -> None: ...

    def congested(self) -> bool: ...


@dataclass(slots=True, eq=False)
class Subscription:
    """One filter of one session, as stored in the account's subscription index."""

    session: Session
    topic_filter: str
    qos: int
    share_group: str | None = None
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    sub_id: int | None = None

    @property
    def key(self) -> str:
        """How the client names it (unsubscribe uses this)."""
        if self.share_group is None:
            return self.topic_filter
        return f"$share/{self.share_group}/{self.topic_filter}"


@dataclass(slots=True, eq=False)
class Outgoing:
    """A QoS 1/2 copy for one session: queued, in flight, or released (PUBREL sent)."""

    message: Message
    qos: int
    retain: bool
    sub_ids: tuple[int, ...]
    packet_id: int = 0
    released: bool = False


class HeldPublish:
    """A QoS 1 publish from the client that has no PUBACK on the wire yet.

    Kafka may take it while the connection that brought it is gone; the client then resends
    it (DUP) on its next connection, and the gateway answers from here instead of storing
    it twice. Until a PUBACK is sent the client may not reuse the packet id (MQTT 4.3.2), so
    a DUP resend of the same topic and payload under it is this very message.
    """

    __slots__ = ("digest", "state")

    PENDING = 0  # Kafka has not acknowledged it yet
    RESENT = 1  # pending, and the client resent it on a newer connection
    STORED = 2  # Kafka has it; the connection that brought it was gone by then

    def __init__(self, digest: int) -> None:
        self.state = HeldPublish.PENDING
        self.digest = digest


@dataclass(eq=False)
class Session:
    account: str
    client_id: str
    device_id: str
    token_hash: str
    permission: str
    acl: tuple[dict[str, Any], ...] = ()
    expiry: int = 0  # seconds kept after disconnect; 0 ends with the connection
    max_queue: int = 1000
    link: Link | None = None
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    inflight: dict[int, Outgoing] = field(default_factory=dict)
    queue: deque[Outgoing] = field(default_factory=deque)
    incoming_qos1: dict[int, HeldPublish] = field(default_factory=dict)  # not acknowledged yet
    incoming_qos2: dict[int, bool] = field(default_factory=dict)  # packet id -> stored in Kafka
    disconnected_at: float | None = None
    connected_at: int = 0  # epoch ms of the last CONNECT that took this session
    record_headers: list[tuple[str, bytes]] | None = None  # the envelope's per-session part
    limits: dict[str, Any] = field(default_factory=dict)  # the account's plan limits
    dropped: int = 0
    _next_id: int = 0

    @property
    def can_publish(self) -> bool:
        return self.permission in ("full", "write")

    @property
    def can_subscribe(self) -> bool:
        return self.permission in ("full", "read")

    def _packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self.inflight:
                return self._next_id
        raise RuntimeError("no free packet identifier")  # bounded by receive maximum first

    def deliver(self, msg: Message, qos: int, retain: bool, sub_ids: Sequence[int] = ()) -> None:
        link = self.link
        if qos == 0:
            if link is not None and not link.congested():
                link.send_publish(msg, 0, retain, sub_ids, None, False)
            else:
                self.dropped += 1
            return
        out = Outgoing(msg, qos, retain, tuple(sub_ids))
        if link is not None and not self.queue and len(self.inflight) < link.receive_maximum:
            self._send_new(link, out)
            return
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(out)

    def _send_new(self, link: Link, out: Outgoing) -> None:
        out.packet_id = self._packet_id()
        self.inflight[out.packet_id] = out
        if not link.send_publish(
            out.message, out.qos, out.retain, out.sub_ids, out.packet_id, False
        ):
            # The client cannot take it (bigger than its maximum packet size): discard.
            del self.inflight[out.packet_id]

    def pump(self) -> None:
        link = self.link
        if link is None:
            return
        now = time.monotonic()
        while self.queue and len(self.inflight) < link.receive_maximum:
            out = self.queue.popleft()
            if out.message.expired(now):
                continue
            self._send_new(link, out)

    def on_puback(self, packet_id: int) -> bool:
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 1:
            return False
        del self.inflight[packet_id]
        self.pump()
        return True

    def on_pubrec(self, packet_id: int, reason_code: int) -> bool:
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 2:
            return False
        if reason_code >= 0x80:
            del self.inflight[packet_id]
            self.pump()
            return True
        out.released = True
        if self.link is not None:
            self.link.send_pubrel(packet_id)
        return True

    def on_pubcomp(self, packet_id: int) -> bool:
        out = self.inflight.get(packet_id)
        if out is None or not out.released:
            return False
        del self.inflight[packet_id]
        self.pump()
        return True

    def attach(self, link: Link) -> None:
        """A connection took this session: resend what is in flight (DUP), then the queue."""
        self.link = link
        self.disconnected_at = None
        self.connected_at = time.time_ns() // 1_000_000
        now = time.monotonic()
        for packet_id, out in list(self.inflight.items()):
            if out.released:
                link.send_pubrel(packet_id)
            elif out.message.expired(now):
                del self.inflight[packet_id]
            else:
                link.send_publish(out.message, out.qos, out.retain, out.sub_ids, packet_id, True)
        self.pump()

    def detach(self) -> None:
        self.link = None
        self.disconnected_at = time.monotonic()

    def expired(self, now: float) -> bool:
        return self.disconnected_at is not None and now - self.disconnected_at >= self.expiry
