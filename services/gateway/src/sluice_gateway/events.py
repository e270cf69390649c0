"""Live Inspector events from the gateway, sent in the background (never on the hot path).

Publish events are only produced for devices someone is watching (the API announces an
open inspector on ``sluice.control``), so tracing costs nothing when nobody looks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from sluice import records
from sluice.inspector import Watches, preview
from sluice_gateway.session import Message, Session

log = logging.getLogger("sluice.gateway.events")


class EventSink:
    def __init__(self, producer: AIOKafkaProducer, topic: str, max_queue: int = 10_000) -> None:
        self.producer = producer
        self.topic = topic
        self.watches = Watches()
        self.dropped = 0
        self._queue: deque[tuple[str, dict[str, Any]]] = deque(maxlen=max_queue)
        self._wakeup = asyncio.Event()

    def emit_raw(self, account: str, device: str, kind: str, **fields: Any) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        event = {
            "type": kind,
            "account": account,
            "device": device,
            "service": "gateway",
            "at": records.now_ms(),
            **fields,
        }
        self._queue.append((device, event))
        self._wakeup.set()

    def emit(self, session: Session | None, kind: str, **fields: Any) -> None:
        if session is not None:
            self.emit_raw(session.account, session.device_id, kind, **fields)

    def publish(self, session: Session, msg: Message) -> None:
        self.emit(
            session,
            "publish",
            topic=msg.topic,
            qos=msg.qos,
            retain=msg.retain,
            size=len(msg.payload),
            preview=preview(msg.payload),
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() or self._queue:
            if not self._queue:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), 1.0)
                except TimeoutError:
                    pass
                continue
            device, event = self._queue.popleft()
            try:
                await self.producer.send(
                    self.topic, records.dumps(event), key=device.encode() or None
                )
            except KafkaError as exc:
                self.dropped += 1
                log.debug("inspector event dropped: %s", exc)
