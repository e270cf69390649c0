"""What a relay is (its definition, read from the ``relays`` table) and what it reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# MQTT 5 session expiry the relay asks for: messages for it are kept this long while no
# gateway holds the relay (3.1.1 sessions have no expiry; the broker decides).
SESSION_EXPIRY = 7 * 24 * 3600

STATE_CONNECTING = "connecting"
STATE_CONNECTED = "connected"
STATE_DISCONNECTED = "disconnected"
STATE_ERROR = "error"


@dataclass(frozen=True, slots=True)
class TopicSubscription:
    filter: str
    qos: int


@dataclass(frozen=True, slots=True)
class DeviceMapping:
    """How a message finds its device: a fixed device, or a serial in the topic or payload."""

    type: str  # "device" | "topic" | "json"
    device: str = ""
    segment: int = 0
    field: str = ""


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca: str | None = None
    cert: str | None = None
    key: str | None = field(default=None, repr=False)
    verify: bool = True


@dataclass(frozen=True, slots=True)
class RelayDefinition:
    id: str
    account_id: str
    name: str
    host: str
    port: int
    tls: TlsOptions | None
    username: str | None
    password: str | None = field(repr=False)
    client_id: str
    version: int  # 4 (3.1.1) or 5
    keepalive: int
    subscriptions: tuple[TopicSubscription, ...]
    mapping: DeviceMapping
    downlink_topic: str | None
    ingest_retained: bool = False
    max_payload: int = 256 * 1024  # the account plan's max_packet_size
    # The account plan's limits (sluice.plans.plan_limits): relayed messages count as the
    # device's publishes (per minute, topic length and levels)
    limits: dict[str, Any] = field(default_factory=dict, hash=False)

    def connection(self) -> tuple[Any, ...]:
        """What the broker connection depends on: a change here needs a reconnect."""
        return (
            self.host,
            self.port,
            self.tls,
            self.username,
            self.password,
            self.client_id,
            self.version,
            self.keepalive,
            self.subscriptions,
        )

    @property
    def filters(self) -> frozenset[str]:
        return frozenset(s.filter for s in self.subscriptions)


def definition_from_row(row: Any, limits: dict[str, Any]) -> RelayDefinition:
    """A :class:`RelayDefinition` from a ``Relay`` row (the API validated its fields) and
    its account plan's limits."""
    tls = row.tls if isinstance(row.tls, dict) else None
    mapping = row.mapping if isinstance(row.mapping, dict) else {}
    return RelayDefinition(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        host=row.host,
        port=int(row.port),
        tls=TlsOptions(
            ca=tls.get("ca") or None,
            cert=tls.get("cert") or None,
            key=tls.get("key") or None,
            verify=tls.get("verify", True) is not False,
        )
        if tls is not None
        else None,
        username=row.username or None,
        password=row.password or None,
        client_id=row.client_id or f"sluice-relay-{row.id}",
        version=5 if row.mqtt_version == "5.0" else 4,
        keepalive=int(row.keepalive),
        subscriptions=tuple(
            TopicSubscription(str(s.get("topic", "")), int(s.get("qos", 0)))
            for s in row.subscriptions or ()
            if isinstance(s, dict)
        ),
        mapping=DeviceMapping(
            type=str(mapping.get("type", "")),
            device=str(mapping.get("device") or ""),
            segment=int(mapping.get("segment") or 0),
            field=str(mapping.get("field") or ""),
        ),
        downlink_topic=row.downlink_topic,
        ingest_retained=bool(row.ingest_retained),
        max_payload=int(limits["max_packet_size"]),
        limits=limits,
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RelayStats:
    """Live state of one relay on its owner; written to ``relay_status`` and to metrics."""

    state: str = STATE_CONNECTING
    last_error: str | None = None
    last_error_at: datetime | None = None
    connected_at: datetime | None = None
    messages_in: int = 0
    messages_out: int = 0
    dropped: int = 0
    changed_at: float = field(default_factory=time.monotonic)
    written_at: float = 0.0

    @property
    def connected(self) -> bool:
        return self.state == STATE_CONNECTED

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if state == STATE_CONNECTED:
                self.connected_at = utcnow()
            self.touch()

    def error(self, message: str, state: str | None = None) -> None:
        self.last_error = message
        self.last_error_at = utcnow()
        if state is not None:
            self.state = state
        self.touch()

    def received(self) -> None:
        self.messages_in += 1
        self.touch()

    def sent(self) -> None:
        self.messages_out += 1
        self.touch()

    def drop(self, why: str) -> None:
        self.dropped += 1
        self.error(why)

    def touch(self) -> None:
        self.changed_at = time.monotonic()

    @property
    def dirty(self) -> bool:
        return self.changed_at > self.written_at
