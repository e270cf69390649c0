"""Shared by the storage tests: devices in a real database, ``sluice.data`` records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice import records
from sluice.bus import Record
from sluice.dataitems import format_time
from sluice.db import session_factory
from sluice.db.models import Account, Device
from sluice.ids import derived_id, new_id

NewDevice = Callable[..., Awaitable[str]]
MakeRecord = Callable[..., Record]


async def create_device(engine: AsyncEngine, **fields: Any) -> str:
    """An account and one device in it, straight into the database; returns the device id."""
    account = Account(id=new_id(), name="storage-test", plan="scale")
    fields.setdefault("type", "immutable")
    if fields["type"] == "immutable":
        fields.setdefault("chunk_period", "month")
        fields.setdefault("chunk_retention", 12)
    device = Device(id=new_id(), account_id=account.id, name="sensor", **fields)
    async with session_factory(engine)() as session:
        session.add(account)
        await session.flush()
        session.add(device)
        await session.commit()
    return device.id


@pytest.fixture
def new_device(engine: AsyncEngine) -> NewDevice:
    async def make(**fields: Any) -> str:
        return await create_device(engine, **fields)

    return make


def data_record(
    device: str,
    values: list[Any],
    *,
    message_id: str | None = None,
    when: datetime | None = None,
    received_at: datetime | None = None,
    offset: int = 0,
    **item_fields: Any,
) -> Record:
    """A record as the parser writes it: validated items with ids from message id + index."""
    message_id = message_id or new_id()
    when = when or datetime.now(UTC)
    items = [
        {
            "id": derived_id(message_id, index),
            "variable": "temperature",
            "value": value,
            "unit": None,
            "time": format_time(when),
            "group": message_id,
            "location": None,
            "metadata": None,
            **item_fields,
        }
        for index, value in enumerate(values)
    ]
    arrived = received_at or datetime.now(UTC)
    envelope = records.Envelope(
        message_id=message_id,
        account="acct",
        device=device,
        received_at=int(arrived.timestamp() * 1000),
    )
    return ConsumerRecord(
        "sluice.data",
        0,
        offset,
        0,
        0,
        device.encode(),
        records.dumps(items),
        None,
        0,
        0,
        envelope.to_headers(),
    )


@pytest.fixture
def make_record() -> MakeRecord:
    return data_record
