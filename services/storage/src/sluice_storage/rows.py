"""From a ``sluice.data`` record to data-point rows, and the bucket rules a record must meet.

Pure: no I/O. Row ids come from the parser (message id + item index), so the same record
always yields the same rows and a replay inserts nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice import records
from sluice.buckets import retained_window, window_text
from sluice.bus import Record
from sluice.config import DeviceInfo
from sluice.dataitems import format_time, item_from_json, value_type

# Columns of ``data_points`` in the order both write paths use.
COLUMNS: tuple[str, ...] = (
    "id",
    "device_id",
    "variable",
    "value_type",
    "value_number",
    "value_text",
    "value_bool",
    "unit",
    "group",
    "time",
    "location",
    "metadata",
    "message_id",
    "created_at",
)


class RecordRejected(ValueError):
    """A record that can never be stored as it is; ``reason`` starts with a short category."""


@dataclass(slots=True)
class RecordRows:
    """One record and the rows it holds (all stored, or none)."""

    record: Record
    envelope: records.Envelope
    rows: list[dict[str, Any]]

    @property
    def received_at(self) -> datetime:
        """When the platform accepted the message (its rows' ``created_at``)."""
        return self.rows[0]["created_at"] if self.rows else datetime.now(UTC)


def record_rows(record: Record, now: datetime) -> RecordRows:
    """The rows of one record; raises RecordRejected when it cannot be read.

    ``created_at`` is when the platform accepted the message (its ``received_at``), so
    ``last_insert`` follows arrival order and a replay writes the very same row; ``now``
    stands in for records that do not say.
    """
    envelope = records.Envelope.from_headers(record.headers)
    if not envelope.device:
        raise RecordRejected("unreadable record: no 'device' header")
    ms = envelope.received_at
    created_at = datetime.fromtimestamp(ms / 1000, UTC) if ms > 0 else now
    try:
        items = records.loads(record.value)
    except ValueError as exc:
        raise RecordRejected(f"unreadable record: value is not JSON ({exc})") from None
    if not isinstance(items, list):
        raise RecordRejected("unreadable record: value is not a list of items")
    rows = []
    for index, raw in enumerate(items):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise RecordRejected(f"unreadable record: item {index} has no id")
        try:
            item = item_from_json(raw)
            kind = value_type(item.value)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise RecordRejected(f"unreadable record: item {index}: {exc}") from None
        value = item.value
        rows.append(
            {
                "id": raw["id"],
                "device_id": envelope.device,
                "variable": item.variable,
                "value_type": kind,
                "value_number": float(value) if kind == "number" else None,  # type: ignore[arg-type]
                "value_text": value if kind == "string" else None,
                "value_bool": value if kind == "boolean" else None,
                "unit": item.unit,
                "group": item.group,
                "time": item.time,
                "location": item.location,
                "metadata": item.metadata,
                "message_id": envelope.message_id or None,
                "created_at": created_at,
            }
        )
    return RecordRows(record, envelope, rows)


def window_violation(unit: RecordRows, device: DeviceInfo) -> str | None:
    """Why an immutable device refuses the record's times, or None when they all fit.

    The window is taken at the record's arrival (``received_at``), not at write time, so
    a replay after a crash is judged exactly as the first attempt was.
    """
    if device.type != "immutable" or not device.chunk_period:
        return None
    window = retained_window(unit.received_at, device.chunk_period, device.chunk_retention or 0)
    start, end = window
    for index, row in enumerate(unit.rows):
        when = row["time"]
        if not start <= when < end:
            return (
                f"immutable window: item {index} ({row['variable']}): 'time' "
                f"{format_time(when)} is outside what the device keeps. {window_text(window)}"
            )
    return None
