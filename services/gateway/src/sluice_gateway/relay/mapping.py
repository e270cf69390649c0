"""The relay's pure rules: which device a message belongs to, which external topic a
platform publish goes to, which gateway owns a relay, how long to wait before reconnecting,
and which incoming messages are the relay's own publishes coming back."""

from __future__ import annotations

import hashlib
import random
import re
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from sluice.topicfilter import TEMPLATE_PLACEHOLDER, validate_topic_name
from sluice.topicfilter import template_problem as topic_template_problem
from sluice_gateway.relay.model import DeviceMapping


class Unmapped(Exception):
    """A message (or platform publish) the relay cannot place; the text says why."""


@dataclass(frozen=True, slots=True)
class Located:
    """Where a relayed message goes: a device id, or a serial to look up."""

    device: str | None = None
    serial: str | None = None


def serial_from_topic(topic: str, segment: int) -> str | None:
    """Level ``segment`` of the topic (0 is the first, -1 the last); None if absent or empty."""
    levels = topic.split("/")
    if not -len(levels) <= segment < len(levels):
        return None
    return levels[segment] or None


def serial_from_json(payload: bytes, path: str) -> str | None:
    """The string or integer at a dotted path of a JSON payload (``0.serial`` indexes lists)."""
    try:
        value: object = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str | int):
        return str(value).strip() or None
    return None


def locate(mapping: DeviceMapping, topic: str, payload: bytes) -> Located:
    """Apply a relay's mapping to one message; raises :class:`Unmapped` with the reason."""
    if mapping.type == "device":
        return Located(device=mapping.device)
    if mapping.type == "topic":
        serial = serial_from_topic(topic, mapping.segment)
        if serial is None:
            raise Unmapped(f"topic {topic!r} has no level {mapping.segment} holding a serial")
        return Located(serial=serial)
    if mapping.type == "json":
        serial = serial_from_json(payload, mapping.field)
        if serial is None:
            raise Unmapped(
                f"payload on {topic!r} is not JSON with a string or number at {mapping.field!r}"
            )
        return Located(serial=serial)
    raise Unmapped(f"unknown mapping type {mapping.type!r}")


PLACEHOLDERS = ("topic", "serial", "device")


def template_problem(template: str) -> str | None:
    """None when ``template`` is a usable downlink topic template, else what is wrong."""
    return topic_template_problem(template, PLACEHOLDERS)


def downlink_topic(template: str, *, topic: str, device: str, serial: str | None) -> str:
    """The external topic a platform publish to ``device`` on ``topic`` goes to."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "topic":
            return topic
        if name == "device":
            return device
        if serial is None:
            raise Unmapped(f"the downlink topic needs {{serial}} but device {device} has none")
        return serial

    result = TEMPLATE_PLACEHOLDER.sub(fill, template)
    problem = validate_topic_name(result)
    if problem is not None:
        raise Unmapped(f"downlink topic {result!r}: {problem}")
    return result


def uses_serial(template: str | None) -> bool:
    return template is not None and "{serial}" in template


def partition_for(relay_id: str, partitions: int) -> int:
    """The partition of the ownership topic whose holder runs this relay."""
    return zlib.crc32(relay_id.encode()) % partitions


class Backoff:
    """Exponential reconnect delays with jitter; reset only after a connection that lasted."""

    def __init__(
        self,
        first: float = 0.5,
        maximum: float = 30.0,
        *,
        stable_after: float = 10.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first = first
        self.maximum = maximum
        self.stable_after = stable_after
        self.jitter = jitter
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        base = min(self.maximum, self.first * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return base * (1 - self.jitter + 2 * self.jitter * self.rng())

    def connection_ended(self, lasted: float) -> None:
        """A connection that stayed up a while starts the delays over; a flapping one not."""
        if lasted >= self.stable_after:
            self.attempt = 0


class EchoFilter:
    """Messages the relay itself published, so it can drop them when its subscriptions
    bring them back (MQTT 3.1.1 has no "no local" option; on 5.0 the broker filters)."""

    def __init__(
        self,
        ttl: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._sent: OrderedDict[tuple[str, bytes], tuple[int, float]] = OrderedDict()

    @staticmethod
    def _key(topic: str, payload: bytes) -> tuple[str, bytes]:
        return topic, hashlib.blake2b(payload, digest_size=16).digest()

    def _expire(self, now: float) -> None:
        while self._sent:
            key, (_, deadline) = next(iter(self._sent.items()))
            if deadline > now and len(self._sent) <= self.max_entries:
                return
            del self._sent[key]

    def sent(self, topic: str, payload: bytes) -> None:
        now = self.clock()
        key = self._key(topic, payload)
        count, _ = self._sent.pop(key, (0, 0.0))
        self._sent[key] = (count + 1, now + self.ttl)
        self._expire(now)

    def is_echo(self, topic: str, payload: bytes) -> bool:
        """True (once per publish) when this message is one the relay just published."""
        if not self._sent:
            return False
        now = self.clock()
        self._expire(now)
        key = self._key(topic, payload)
        entry = self._sent.get(key)
        if entry is None:
            return False
        count, deadline = entry
        if count <= 1:
            del self._sent[key]
        else:
            self._sent[key] = (count - 1, deadline)
        return True
