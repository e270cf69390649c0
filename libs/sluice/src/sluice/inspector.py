"""Live Inspector events: what happened to a device's traffic, for its owner to watch.

Events are best effort (a lost event never blocks data) and carry the account so the
API only shows an account its own devices.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from sluice import records

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


class Inspector:
    def __init__(
        self, producer: AIOKafkaProducer, topics: records.TopicNames, service: str
    ) -> None:
        self.producer = producer
        self.topic = topics.inspector
        self.service = service

    async def emit(self, account: str, device: str, kind: str, **fields: Any) -> None:
        event = {
            "type": kind,
            "account": account,
            "device": device,
            "service": self.service,
            "at": records.now_ms(),
            **fields,
        }
        try:
            await self.producer.send(self.topic, records.dumps(event), key=device.encode())
        except KafkaError as exc:
            log.debug("inspector event dropped: %s", exc)
