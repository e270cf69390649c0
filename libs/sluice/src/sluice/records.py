"""Kafka topic names and the record envelope: the one place both are defined.

Every record is keyed by device id (per-device ordering). The envelope travels in
record headers so that a raw MQTT payload can be the record value untouched; JSON
values are compact orjson. Consumers tolerate headers they do not know.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1

UPLINK = "uplink"
INGEST = "ingest"
DATA = "data"
DOWNLINK = "downlink"
RETAINED = "retained"
CONTROL = "control"
INSPECTOR = "inspector"
DEAD_LETTER = "dead-letter"
ACTION_JOBS = "action-jobs"  # webhooks and emails the actions service owes, with retries
RELAYS = "relays"  # carries nothing: gateways join a group on it to share out MQTT relays

ALL_TOPICS: tuple[str, ...] = (
    UPLINK,
    INGEST,
    DATA,
    DOWNLINK,
    RETAINED,
    CONTROL,
    INSPECTOR,
    DEAD_LETTER,
    ACTION_JOBS,
    RELAYS,
)
COMPACTED_TOPICS = frozenset({RETAINED})
# Topics every node reads whole (no consumer group): few records, one partition keeps
# them ordered and cheap to tail.
SINGLE_PARTITION_TOPICS = frozenset({CONTROL})

# Ingest record kinds: what the value holds.
KIND_MQTT = "mqtt"  # raw MQTT payload bytes; normalise with the topic
KIND_ITEMS = "items"  # JSON list of TagoIO data items (POST /data)
KIND_RAW = "raw"  # a non-JSON HTTP body, normalised like a text payload

Headers = Sequence[tuple[str, bytes]]


class TopicNames:
    """Full topic names under a prefix (``sluice.`` by default; tests use their own)."""

    def __init__(self, prefix: str = "sluice.") -> None:
        self.prefix = prefix
        self.uplink = prefix + UPLINK
        self.ingest = prefix + INGEST
        self.data = prefix + DATA
        self.downlink = prefix + DOWNLINK
        self.retained = prefix + RETAINED
        self.control = prefix + CONTROL
        self.inspector = prefix + INSPECTOR
        self.dead_letter = prefix + DEAD_LETTER
        self.action_jobs = prefix + ACTION_JOBS
        self.relays = prefix + RELAYS

    def all(self) -> list[str]:
        return [self.prefix + name for name in ALL_TOPICS]

    def short(self, full: str) -> str:
        return full[len(self.prefix) :] if full.startswith(self.prefix) else full


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class Envelope:
    """What every record says about itself, carried in headers."""

    message_id: str
    account: str
    device: str
    topic: str = ""
    qos: int = 0
    received_at: int = field(default_factory=now_ms)
    origin: str = ""
    retain: bool = False
    kind: str = ""
    schema: int = SCHEMA_VERSION
    extra: dict[str, str] = field(default_factory=dict)

    def to_headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("message_id", self.message_id.encode()),
            ("account", self.account.encode()),
            ("device", self.device.encode()),
            ("topic", self.topic.encode()),
            ("qos", b"%d" % self.qos),
            ("received_at", b"%d" % self.received_at),
            ("origin", self.origin.encode()),
            ("schema", b"%d" % self.schema),
        ]
        if self.retain:
            headers.append(("retain", b"1"))
        if self.kind:
            headers.append(("kind", self.kind.encode()))
        headers.extend((k, v.encode()) for k, v in self.extra.items())
        return headers

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[str, bytes]]) -> Envelope:
        # Every consumer calls this per record: decode only what it is, once (positional
        # arguments and texts decoded in line: each call saves ~0.7 µs).
        values = dict(headers)
        pop = values.pop
        return cls(
            pop("message_id", b"").decode("utf-8", "replace"),
            pop("account", b"").decode("utf-8", "replace"),
            pop("device", b"").decode("utf-8", "replace"),
            pop("topic", b"").decode("utf-8", "replace"),
            _int(pop("qos", b"0")),
            _int(pop("received_at", b"0")),
            pop("origin", b"").decode("utf-8", "replace"),
            pop("retain", b"") == b"1",
            pop("kind", b"").decode("utf-8", "replace"),
            _int(pop("schema", b"1")),
            {k: _text(v) for k, v in values.items()} if values else {},
        )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _int(raw: bytes | str) -> int:
    try:
        return int(raw)
    except ValueError:
        return 0


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise
        # JSON from clients may hold integers past 64 bits; JavaScript (TagoIO, the parser
        # sandbox) reads every number as a double, so store them as one too (past the
        # double range JavaScript has Infinity, which JSON writes as null, as orjson does).
        return orjson.dumps(_wide_ints_as_floats(value))


def _wide_ints_as_floats(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return value
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, list):
        return [_wide_ints_as_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _wide_ints_as_floats(v) for k, v in value.items()}
    return value


def loads(data: bytes | None) -> Any:
    return orjson.loads(data) if data else None


def header(headers: Iterable[tuple[str, bytes]], name: str) -> bytes | None:
    """The value of one header without building an Envelope (hot paths)."""
    for key, value in headers:
        if key == name:
            return value
    return None
