"""Which parser thread gets a device's records (DevicePlacement): pure, no threads."""

from __future__ import annotations

import random
from itertools import pairwise

from aiokafka.structs import ConsumerRecord

from sluice.config import DeviceInfo
from sluice_parser.app import DevicePlacement
from sluice_parser.worker import Work


def device(device_id: str) -> DeviceInfo:
    # Only the id matters here.
    return DeviceInfo(device_id, "acc", device_id, "immutable", True, (), (), None, None, None)


def batch(devices: list[str], start: int = 0, partition: int | None = None) -> list[Work]:
    """One record per entry of `devices`, offsets counting from `start`; a device's partition
    is the number after its last "-" unless `partition` is given."""
    return [
        Work(
            ConsumerRecord(
                "t.ingest",
                int(d.rsplit("-", 1)[-1]) % 4 if partition is None else partition,
                start + n,
                0,
                0,
                None,
                b"",
                None,
                0,
                0,
                (),
            ),
            device(d),
        )
        for n, d in enumerate(devices)
    ]


def where(shares: list[list[Work]]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for index, share in enumerate(shares):
        for item in share:
            found.setdefault(item.device.id, set()).add(index)
    return found


def test_a_device_keeps_its_thread_and_its_records_their_order() -> None:
    placement = DevicePlacement(3)
    rng = random.Random(7)
    names = [f"dev-{n}" for n in range(40)]
    thread_of: dict[str, int] = {}
    offset = 0
    for _ in range(20):
        work = batch([rng.choice(names) for _ in range(300)], offset)
        offset += len(work)
        shares = placement.shares(work)
        assert sorted(item.record.offset for share in shares for item in share) == [
            item.record.offset for item in work
        ]
        for index, share in enumerate(shares):
            offsets = [item.record.offset for item in share]
            assert offsets == sorted(offsets)  # the batch's order within each thread
            for item in share:
                assert thread_of.setdefault(item.device.id, index) == index


def test_busy_devices_arriving_in_separate_batches_get_separate_threads() -> None:
    # A hash puts two devices on one thread half the time; here each batch holds the
    # records of one device only (one partition each), and they still get a thread each.
    placement = DevicePlacement(2)
    first = where(placement.shares(batch(["gateway-a"] * 500, partition=0)))
    second = where(placement.shares(batch(["gateway-b"] * 500, partition=1)))
    third = where(placement.shares(batch(["gateway-a"] * 250 + ["gateway-b"] * 250, partition=2)))
    assert first["gateway-a"] != second["gateway-b"]
    assert third == {"gateway-a": first["gateway-a"], "gateway-b": second["gateway-b"]}


def test_many_devices_are_spread_evenly() -> None:
    placement = DevicePlacement(2)
    rng = random.Random(3)
    names = [f"sensor-{n}" for n in range(200)]
    counts = [0, 0]
    for _ in range(25):
        shares = placement.shares(batch([rng.choice(names) for _ in range(2000)]))
        for index, share in enumerate(shares):
            counts[index] += len(share)
    assert abs(counts[0] - counts[1]) < 0.05 * sum(counts)


def test_each_partitions_devices_are_spread_over_the_threads() -> None:
    # A consumed batch often holds one partition's records only; if that partition's devices
    # all had one thread, the others would idle through it. Here devices are first seen in
    # batches of mixed and single partitions, with the threads' earlier load uneven.
    placement = DevicePlacement(2)
    rng = random.Random(5)
    names = [f"sensor-{n}" for n in range(200)]
    placement.shares(batch([rng.choice(names[:60]) for _ in range(1500)]))
    for part in (1, 0, 3, 2):
        placement.shares(batch([rng.choice(names[part::4]) for _ in range(700)]))
    for part in range(4):
        shares = placement.shares(batch([name for name in names[part::4] for _ in range(10)]))
        counts = [len(share) for share in shares]
        assert abs(counts[0] - counts[1]) <= 0.1 * sum(counts), (part, counts)


def test_past_the_table_new_devices_go_by_hash_until_the_threads_are_idle() -> None:
    first = [f"first-{n}" for n in range(16)]
    late = [f"late-{n}" for n in range(40)]
    placement = DevicePlacement(2, remembered=len(first))
    known = where(placement.shares(batch(first)))
    for _ in range(3):  # stable while the table is full, and the known ones stay put
        found = where(placement.shares(batch([*first, *late])))
        assert {name: found[name] for name in first} == known
        assert all(found[name] == {hash(name) % 2} for name in late)
    placement.idle()  # nothing in flight: the table starts again, and places by load
    placed = [
        next(iter(where(placement.shares(batch([name] * 100, partition=0)))[name]))
        for name in late[:16]
    ]
    assert all(one != next_one for one, next_one in pairwise(placed))
