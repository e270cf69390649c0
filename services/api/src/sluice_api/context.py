"""What the API holds for its lifetime (built once in the lifespan, see app.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sluice import metrics, records
from sluice.config import control_event
from sluice.limits import WindowCounter
from sluice_api.errors import ApiError
from sluice_api.settings import ApiSettings

if TYPE_CHECKING:
    from sluice_api.inspector import InspectorHub

log = logging.getLogger("sluice.api")


@dataclass
class ApiContext:
    settings: ApiSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    topics: records.TopicNames
    hub: InspectorHub | None = None
    # Plan limits per account and minute; shared with the other API processes through
    # Redis when SLUICE_REDIS_URL is set (the lifespan runs its sync loop).
    limiter: WindowCounter = field(default_factory=lambda: WindowCounter(prefix="sluice:api:"))
    extras: dict[str, Any] = field(default_factory=dict)

    async def publish_control(self, kind: str, *, key: str, **fields: Any) -> None:
        """Tell every service what changed; returns once Kafka has the event.

        Called after the database commit: if Kafka refuses, the change is saved and the
        services' caches pick it up when their entries expire (``control_cache_ttl``).
        """
        try:
            await self.producer.send_and_wait(
                self.topics.control, control_event(kind, **fields), key=key.encode()
            )
        except KafkaError as exc:
            log.error(
                "control event not published",
                extra={"type": kind, "key": key, "error": type(exc).__name__},
            )
            raise ApiError(
                503,
                f"Saved, but the message bus is unavailable ({type(exc).__name__}): running "
                f"services apply the change within {self.settings.control_cache_ttl:g} s",
            ) from None
        metrics.control_events.labels("api", kind).inc()
