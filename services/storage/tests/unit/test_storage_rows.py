"""Records to rows and the immutable window (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka.structs import ConsumerRecord

from sluice import records
from sluice.config import DeviceInfo
from sluice.ids import derived_id
from sluice_storage.rows import RecordRejected, record_rows, window_violation

NOW = datetime(2026, 3, 18, 12, tzinfo=UTC)


def device(kind: str = "immutable", period: str | None = "day", retention: int = 0) -> DeviceInfo:
    return DeviceInfo("d" * 24, "a" * 24, "s", kind, True, (), (), None, period, retention)


def record(value: bytes, **envelope: object) -> ConsumerRecord:  # type: ignore[type-arg]
    env = records.Envelope(
        message_id="m1", account="a", device="d" * 24, received_at=int(NOW.timestamp() * 1000)
    )
    for key, val in envelope.items():
        setattr(env, key, val)
    return ConsumerRecord("t", 0, 7, 0, 0, b"k", value, None, 0, 0, env.to_headers())


def item(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": derived_id("m1", 0),
        "variable": "temperature",
        "value": 21.5,
        "unit": "C",
        "time": "2026-03-18T11:00:00.000Z",
        "group": "g",
        "location": {"type": "Point", "coordinates": [1.0, 2.0]},
        "metadata": {"room": "lab"},
    }
    return {**base, **fields}


def test_a_record_becomes_typed_rows() -> None:
    values = [21.5, 3, "on", False, None]
    unit = record_rows(
        record(records.dumps([item(id=str(i), value=v) for i, v in enumerate(values)])), NOW
    )
    rows = unit.rows
    assert [r["value_type"] for r in rows] == ["number", "number", "string", "boolean", "null"]
    assert [r["value_number"] for r in rows] == [21.5, 3.0, None, None, None]
    assert rows[2]["value_text"] == "on"
    assert rows[3]["value_bool"] is False
    first = rows[0]
    assert first["device_id"] == "d" * 24
    assert first["message_id"] == "m1"
    assert first["time"] == datetime(2026, 3, 18, 11, tzinfo=UTC)
    assert first["location"] == {"type": "Point", "coordinates": [1.0, 2.0]}
    assert first["metadata"] == {"room": "lab"}
    assert first["created_at"] == NOW
    assert unit.received_at == NOW


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff", "unreadable record: value is not JSON"),
        (b'{"variable": "t"}', "unreadable record: value is not a list of items"),
        (b'[{"variable": "t"}]', "unreadable record: item 0 has no id"),
        (records.dumps([item(value=[1])]), "unreadable record: item 0: 'value' must be"),
        (records.dumps([item(time="soon")]), "unreadable record: item 0: Invalid isoformat"),
    ],
)
def test_unreadable_records_are_refused_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(RecordRejected) as caught:
        record_rows(record(value), NOW)
    assert str(caught.value).startswith(reason)


def test_the_window_is_judged_at_arrival_and_names_the_item() -> None:
    times = ["2026-03-18T00:00:00Z", "2026-03-19T23:59:59.999Z", "2026-03-17T23:59:59Z"]
    unit = record_rows(
        record(records.dumps([item(id=str(i), time=t) for i, t in enumerate(times)])), NOW
    )
    problem = window_violation(unit, device(retention=0))
    assert problem is not None
    assert problem.startswith("immutable window: item 2 (temperature)")
    assert problem.endswith("Time must be between 2026-03-18 and 2026-03-19")
    assert window_violation(unit, device(retention=1)) is None
    assert window_violation(unit, device("mutable", None)) is None
