"""A storage-only stack (the real ``sluice_storage`` process) and a load generator."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice import bus, records
from sluice.db import session_factory
from sluice.db.models import DataPoint
from sluice.embedded import EmbeddedKafka
from sluice.settings import SluiceSettings
from sluice.testing.stack import Stack


def storage_stack(kafka: EmbeddedKafka, database_url: str, log_dir: Path) -> Stack:
    prefix = f"st{uuid.uuid4().hex[:8]}."
    settings = SluiceSettings(kafka_bootstrap=kafka.bootstrap, topic_partitions=4)
    asyncio.run(bus.ensure_topics(settings, records.TopicNames(prefix)))
    stack = Stack(kafka.bootstrap, database_url, prefix, log_dir, services=("storage",))
    # Small batches: many transactions in flight, so a kill lands inside one.
    stack.extra_env["SLUICE_STORAGE_BATCH"] = "200"
    return stack


@pytest.fixture
def storage_only(kafka: EmbeddedKafka, database_url: str, tmp_path: Path) -> Iterator[Stack]:
    stack = storage_stack(kafka, database_url, tmp_path / "logs")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


async def count_rows(engine: AsyncEngine, device: str) -> int:
    async with session_factory(engine)() as session:
        stmt = select(func.count()).select_from(DataPoint).where(DataPoint.device_id == device)
        return int(await session.scalar(stmt) or 0)


async def produce(stack: Stack, records_: list[bus.Record], pause_every: int = 0) -> None:
    """Produce records to the stack's ``sluice.data`` (acks=all), pausing now and then."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        topic = stack.topic_prefix + records.DATA
        pending = []
        for index, record in enumerate(records_):
            pending.append(
                await producer.send(
                    topic, record.value, key=record.key, headers=list(record.headers)
                )
            )
            if pause_every and index % pause_every == pause_every - 1:
                await asyncio.gather(*pending)
                pending.clear()
                await asyncio.sleep(0.05)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


@pytest.fixture
def rows_of() -> object:
    """``await rows_of(engine, device)``: how many data points the device has."""
    return count_rows


@pytest.fixture
def load() -> object:
    """``await load(stack, records, pause_every=0)``: produce records to ``sluice.data``."""
    return produce
