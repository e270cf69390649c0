"""Turn ``sluice.data`` records into rows and write them idempotently, a batch per transaction.

Row ids come from the message id and item index (set by the parser), so inserting a
replayed record is a no-op: ``ON CONFLICT (id) DO NOTHING`` on both databases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Insert, Table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sluice import records
from sluice.bus import Record
from sluice.dataitems import item_from_json, value_type
from sluice.db.models import DataPoint, Device

log = logging.getLogger("sluice.storage")


class RecordRejected(ValueError):
    """A record that can never be stored as it is; it goes to the dead-letter topic."""


@dataclass
class Rows:
    rows: list[dict[str, Any]] = field(default_factory=list)
    last_input: dict[str, datetime] = field(default_factory=dict)


def record_rows(record: Record, created_at: datetime) -> list[dict[str, Any]]:
    """The data-point rows a record holds (raises RecordRejected when unreadable)."""
    envelope = records.Envelope.from_headers(record.headers)
    try:
        items = records.loads(record.value)
    except ValueError as exc:
        raise RecordRejected(f"value is not JSON: {exc}") from None
    if not isinstance(items, list):
        raise RecordRejected("value is not a list of items")
    rows = []
    for raw in items:
        if not isinstance(raw, dict) or "id" not in raw:
            raise RecordRejected("an item has no id")
        try:
            item = item_from_json(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordRejected(f"item {raw.get('id')}: {exc}") from None
        kind = value_type(item.value)
        rows.append(
            {
                "id": raw["id"],
                "device_id": envelope.device,
                "variable": item.variable,
                "value_type": kind,
                "value_number": float(item.value)
                if isinstance(item.value, int | float) and kind == "number"
                else None,
                "value_text": item.value if kind == "string" else None,
                "value_bool": item.value if kind == "boolean" else None,
                "unit": item.unit,
                "group": item.group,
                "time": item.time,
                "location": item.location,
                "meta": item.metadata,
                "message_id": envelope.message_id,
                "created_at": created_at,
            }
        )
    return rows


def _insert(dialect: str) -> Insert:
    table = cast(Table, DataPoint.__table__)
    stmt = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return stmt.on_conflict_do_nothing(index_elements=["id"])


def _db_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    # Core inserts use column names: the ORM attribute ``meta`` is the column ``metadata``.
    return [{**{k: v for k, v in r.items() if k != "meta"}, "metadata": r["meta"]} for r in rows]


def _is_data_error(exc: Exception) -> bool:
    """True when the database refused the data itself, not when it is unreachable."""
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        return not exc.connection_invalidated and type(exc).__name__ in (
            "DataError",
            "IntegrityError",
        )
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


class BucketWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], dialect: str) -> None:
        self.sessions = sessions
        self.insert = _insert(dialect)

    async def write(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows (duplicates ignored) and move each ``last_input``, in one transaction."""
        if not rows:
            return
        last_input: dict[str, datetime] = {}
        for row in rows:
            last_input[row["device_id"]] = row["created_at"]
        async with self.sessions() as session, session.begin():
            await session.execute(self.insert, _db_rows(rows))
            for device_id, when in last_input.items():
                await session.execute(
                    update(Device).where(Device.id == device_id).values(last_input=when)
                )

    async def write_batch(self, batch: list[Record]) -> list[tuple[Record, str]]:
        """Store a batch; returns the records rejected (with the reason) for the dead-letter topic.

        A database that cannot be reached raises, so the consumer retries the whole batch.
        """
        now = datetime.now(UTC)
        good: list[tuple[Record, list[dict[str, Any]]]] = []
        rejected: list[tuple[Record, str]] = []
        for record in batch:
            try:
                good.append((record, record_rows(record, now)))
            except RecordRejected as exc:
                rejected.append((record, str(exc)))
        try:
            await self.write([row for _, rows in good for row in rows])
            return rejected
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            log.warning("batch refused by the database (%s); storing record by record", exc)
        for record, rows in good:
            try:
                await self.write(rows)
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                rejected.append((record, f"database refused the data: {exc}"))
        return rejected
