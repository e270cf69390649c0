"""Retention with an injected clock, against real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.config import ConfigStore
from sluice.db import session_factory
from sluice.db.models import DataPoint
from sluice_storage.retention import RetentionJob
from sluice_storage.stores import point_store
from sluice_storage.writer import BucketWriter


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def times(engine: AsyncEngine, device: str) -> list[datetime]:
    async with session_factory(engine)() as session:
        stmt = select(DataPoint.time).where(DataPoint.device_id == device).order_by(DataPoint.time)
        return list((await session.scalars(stmt)).all())


async def test_retention_deletes_expired_chunks_as_the_clock_moves(
    engine, new_device, make_record
) -> None:
    clock = FakeClock(datetime(2026, 3, 18, 12, tzinfo=UTC))  # a Wednesday
    weekly = await new_device(chunk_period="week", chunk_retention=1)
    monthly = await new_device(chunk_period="month", chunk_retention=0)
    mutable = await new_device(type="mutable")
    w = BucketWriter(point_store(engine), ConfigStore(session_factory(engine)).device)
    # Written in the past (received_at): each was inside its window when it arrived.
    week_points = [
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 8, 23, 59, 59, tzinfo=UTC),  # Sunday: last instant of an old week
        datetime(2026, 3, 9, tzinfo=UTC),  # Monday: first instant of the retained week
        datetime(2026, 3, 17, tzinfo=UTC),
    ]
    batch = [make_record(weekly, [i], when=t, received_at=t) for i, t in enumerate(week_points)]
    batch += [
        make_record(
            monthly,
            [1],
            when=datetime(2026, 2, 27, tzinfo=UTC),
            received_at=datetime(2026, 2, 27, tzinfo=UTC),
        ),
        make_record(
            monthly,
            [2],
            when=datetime(2026, 3, 1, tzinfo=UTC),
            received_at=datetime(2026, 3, 1, tzinfo=UTC),
        ),
        make_record(mutable, [3], when=datetime(2020, 1, 1, tzinfo=UTC)),
    ]
    assert (await w.write_batch(batch)).rejected == []

    job = RetentionJob(engine, clock=clock, batch=1)  # one row per transaction: the batch loop
    assert await job.run_once() == 3
    assert await times(engine, weekly) == week_points[2:]
    assert await times(engine, monthly) == [datetime(2026, 3, 1, tzinfo=UTC)]
    assert await times(engine, mutable) == [datetime(2020, 1, 1, tzinfo=UTC)]

    clock.now = datetime(2026, 3, 23, 0, 0, tzinfo=UTC)  # next Monday: the week of the 9th expires
    assert await job.run_once() == 1
    assert await times(engine, weekly) == [datetime(2026, 3, 17, tzinfo=UTC)]
    assert await job.run_once() == 0  # nothing left to expire: a no-op
