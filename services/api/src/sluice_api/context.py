"""What the API holds for its lifetime (built once in the lifespan, see app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sluice import records
from sluice.config import control_event
from sluice_api.settings import ApiSettings


@dataclass
class ApiContext:
    settings: ApiSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    topics: records.TopicNames
    extras: dict[str, Any] = field(default_factory=dict)

    async def publish_control(self, kind: str, *, key: str, **fields: Any) -> None:
        """Tell every service what changed; returns once Kafka has the event."""
        await self.producer.send_and_wait(
            self.topics.control, control_event(kind, **fields), key=key.encode()
        )
