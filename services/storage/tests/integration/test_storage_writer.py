"""The bucket writer against real SQLite and PostgreSQL: idempotence, bucket rules, poison."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka.structs import ConsumerRecord
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice import records
from sluice.buckets import MUTABLE_CAP_MESSAGE
from sluice.config import ConfigStore
from sluice.db import session_factory
from sluice.db.models import DataPoint, Device
from sluice_storage.stores import point_store
from sluice_storage.writer import BucketWriter


def writer(engine: AsyncEngine, **kwargs: object) -> BucketWriter:
    store = ConfigStore(session_factory(engine))
    return BucketWriter(point_store(engine), store.device, **kwargs)  # type: ignore[arg-type]


async def stored(engine: AsyncEngine, device: str) -> list[DataPoint]:
    async with session_factory(engine)() as session:
        stmt = select(DataPoint).where(DataPoint.device_id == device).order_by(DataPoint.id)
        return list((await session.scalars(stmt)).all())


async def test_a_replayed_batch_leaves_one_row_per_item(engine, new_device, make_record) -> None:
    device = await new_device()
    batch = [make_record(device, [1, 2.5, "on", True, None], offset=0), make_record(device, [3])]
    w = writer(engine)
    assert (await w.write_batch(batch)).rejected == []
    # The same records again (a crash before the offsets were committed), and a producer
    # retry that put one record twice into a batch.
    assert (await w.write_batch([*batch, batch[1]])).rejected == []
    rows = await stored(engine, device)
    assert len(rows) == 6
    by_kind = {r.value_type for r in rows}
    assert by_kind == {"number", "string", "boolean", "null"}
    async with session_factory(engine)() as session:
        last_input = (await session.get(Device, device)).last_input  # type: ignore[union-attr]
    assert last_input is not None


async def test_immutable_device_refuses_times_outside_its_window(
    engine, new_device, make_record
) -> None:
    device = await new_device(chunk_period="day", chunk_retention=1)
    now = datetime(2026, 3, 18, 12, tzinfo=UTC)
    good = make_record(device, [1, 2], when=now - timedelta(days=1), received_at=now)
    old = make_record(device, [3], when=datetime(2026, 3, 16, 23, 59, tzinfo=UTC), received_at=now)
    future = make_record(device, [4], when=datetime(2026, 3, 20, tzinfo=UTC), received_at=now)
    edge = make_record(device, [5], when=datetime(2026, 3, 19, 23, 59, tzinfo=UTC), received_at=now)

    outcome = await writer(engine).write_batch([good, old, future, edge])

    refused = {r.record.offset: r.reason for r in outcome.rejected}
    assert [r.record for r in outcome.rejected] == [old, future]
    assert all(r.stage == "immutable window" for r in outcome.rejected)
    assert "Time must be between 2026-03-17 and 2026-03-19" in refused[0]
    assert sorted(r.value_number for r in await stored(engine, device)) == [1, 2, 5]


async def test_mutable_cap_refuses_what_passes_it_but_never_a_replay(
    engine, new_device, make_record
) -> None:
    device = await new_device(type="mutable")
    w = writer(engine, mutable_cap=10)
    first = make_record(device, list(range(8)))
    assert (await w.write_batch([first])).rejected == []

    too_many = make_record(device, [8, 9, 10])
    fits = make_record(device, [8, 9])
    outcome = await w.write_batch([too_many, fits, first])  # `first` replayed at the cap

    assert [r.record for r in outcome.rejected] == [too_many]
    assert outcome.rejected[0].reason == f"mutable cap: {MUTABLE_CAP_MESSAGE}"
    assert len(await stored(engine, device)) == 10
    # Full: a new record is refused, and nothing already stored is touched.
    outcome = await w.write_batch([make_record(device, [11])])
    assert len(outcome.rejected) == 1
    assert len(await stored(engine, device)) == 10


async def test_poison_records_are_refused_and_the_rest_of_the_batch_stored(
    engine, new_device, make_record
) -> None:
    device = await new_device()
    good = [make_record(device, [i], offset=i) for i in range(3)]
    envelope = records.Envelope(message_id="m-bad", account="acct", device=device)
    not_json = ConsumerRecord(
        "sluice.data", 0, 10, 0, 0, b"k", b"{oops", None, 0, 0, envelope.to_headers()
    )
    no_id = ConsumerRecord(
        "sluice.data", 0, 11, 0, 0, b"k", b'[{"variable":"x"}]', None, 0, 0, envelope.to_headers()
    )
    # A unit longer than the column allows: PostgreSQL refuses it, SQLite stores any length.
    long_unit = make_record(device, [99], unit="u" * 40, offset=12)

    outcome = await writer(engine).write_batch(
        [good[0], not_json, no_id, good[1], long_unit, good[2]]
    )

    reasons = {r.record.offset: r.reason for r in outcome.rejected}
    assert reasons[10].startswith("unreadable record: value is not JSON")
    assert reasons[11] == "unreadable record: item 0 has no id"
    values = sorted(r.value_number for r in await stored(engine, device))
    if engine.dialect.name == "postgresql":
        assert reasons[12].startswith("database refused the data: StringDataRightTruncation")
        assert values == [0, 1, 2]
    else:
        assert 12 not in reasons
        assert values == [0, 1, 2, 99]


async def test_data_of_a_deleted_device_is_dropped(engine, make_record) -> None:
    outcome = await writer(engine).write_batch([make_record("f" * 24, [1, 2])])
    assert outcome.rejected == []
    assert outcome.dropped == 2
    async with session_factory(engine)() as session:
        assert await session.scalar(select(func.count()).select_from(DataPoint)) == 0
