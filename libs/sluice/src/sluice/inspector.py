"""Live Inspector events: what happened to a device's traffic, for its owner to watch.

Events are best effort (a lost event never blocks data) and carry the account so the
API only shows an account its own devices.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from sluice import config, records

log = logging.getLogger("sluice.inspector")

PREVIEW_BYTES = 256


def preview(payload: bytes, limit: int = PREVIEW_BYTES) -> str:
    """A printable preview of a payload: text when it is UTF-8, else hex."""
    head = payload[:limit]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.hex().upper()
    return text + ("…" if len(payload) > limit else "")


class Watches:
    """Devices someone watches in the Live Inspector, until when (from ``inspector.watch``
    control events): routine per-message events are produced only for them."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}

    def __call__(self, device: str) -> bool:
        if not self.until:
            return False
        until = self.until.get(device)
        return until is not None and until > time.time()

    def watch(self, device: str, until_ms: int) -> None:
        now = time.time()
        if len(self.until) > 10_000:
            self.until = {d: u for d, u in self.until.items() if u > now}
        self.until[device] = until_ms / 1000

    def apply(self, event: dict[str, Any]) -> None:
        """A control-event listener (ConfigStore.listeners)."""
        if event.get("type") == config.INSPECTOR_WATCH and event.get("device"):
            self.watch(str(event["device"]), int(event.get("until") or 0))


class Inspector:
    def __init__(
        self, producer: AIOKafkaProducer, topics: records.TopicNames, service: str
    ) -> None:
        self.producer = producer
        self.topic = topics.inspector
        self.service = service

    def encode(self, account: str, device: str, kind: str, **fields: Any) -> bytes:
        """The record value of one event (for producers that batch their own records)."""
        event = {
            "type": kind,
            "account": account,
            "device": device,
            "service": self.service,
            "at": records.now_ms(),
            **fields,
        }
        return records.dumps(event)

    async def emit(self, account: str, device: str, kind: str, **fields: Any) -> None:
        value = self.encode(account, device, kind, **fields)
        try:
            await self.producer.send(self.topic, value, key=device.encode())
        except KafkaError as exc:
            log.debug("inspector event dropped: %s", exc)
