"""Kill the storage process (SIGKILL) while it writes under load: no loss, no duplicate.

The real ``sluice_storage`` process, real Tansu, real SQLite and PostgreSQL. Records are
produced straight to ``sluice.data`` as the parser would, some of them poison.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import func, select

from sluice import records
from sluice.db import session_factory
from sluice.db.models import DataPoint
from sluice.testing.stack import Stack

RECORDS = 3000
ITEMS = 10


async def read_topic(stack: Stack, short: str) -> list[Any]:
    """Every record of one of the stack's topics, from the start."""
    consumer = AIOKafkaConsumer(
        stack.topic_prefix + short,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        batch = await consumer.getmany(timeout_ms=3000)
        while batch:
            found += [rec for recs in batch.values() for rec in recs]
            batch = await consumer.getmany(timeout_ms=500)
    finally:
        await consumer.stop()
    return found


async def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(
    storage_only: Stack, engine, new_device, make_record, rows_of, load
) -> None:
    device = await new_device()
    batch = [make_record(device, list(range(ITEMS)), offset=i) for i in range(RECORDS)]
    poison_id = f"poison-{uuid.uuid4().hex[:6]}"
    envelope = records.Envelope(message_id=poison_id, account="acct", device=device)
    poison = dataclasses.replace(batch[0], value=b"not json", headers=envelope.to_headers())
    batch.insert(RECORDS // 2, poison)

    producing = asyncio.create_task(load(storage_only, batch, pause_every=100))
    deadline = asyncio.get_running_loop().time() + 60
    while await rows_of(engine, device) == 0:  # once storage is writing, kill it mid-stream
        assert asyncio.get_running_loop().time() < deadline, storage_only.logs()
        await asyncio.sleep(0.02)
    await asyncio.to_thread(storage_only.processes["storage"].kill)
    killed_at = await rows_of(engine, device)
    await producing
    assert killed_at < RECORDS * ITEMS, "storage finished before the kill; make the load larger"

    await asyncio.to_thread(storage_only.restart, "storage")
    deadline = asyncio.get_running_loop().time() + 60
    while (count := await rows_of(engine, device)) < RECORDS * ITEMS:
        assert asyncio.get_running_loop().time() < deadline, f"stuck at {count} rows"
        await asyncio.sleep(0.1)

    async with session_factory(engine)() as session:
        messages = await session.scalar(
            select(func.count(func.distinct(DataPoint.message_id))).where(
                DataPoint.device_id == device
            )
        )
    assert count == RECORDS * ITEMS  # the primary key makes a duplicate impossible; none lost
    assert messages == RECORDS
    # The poison record went to the dead-letter topic with its reason; the partition moved on.
    letters = {
        dict(r.headers)["message_id"]: dict(r.headers)["dead_reason"].decode()
        for r in await read_topic(storage_only, records.DEAD_LETTER)
    }
    assert letters[poison_id.encode()].startswith("unreadable record: value is not JSON")
    # ... and its owner sees why in the Live Inspector.
    events = [records.loads(r.value) for r in await read_topic(storage_only, records.INSPECTOR)]
    event = next(e for e in events if e.get("message_id") == poison_id)
    assert (event["service"], event["device"], event["stage"]) == (
        "storage",
        device,
        "unreadable record",
    )
    assert event["error"].startswith("unreadable record: value is not JSON")
