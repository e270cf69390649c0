"""Write a batch of ``sluice.data`` records into buckets: one transaction, idempotent rows.

Row ids come from the message id and item index, so inserting a replayed record is a
no-op (``ON CONFLICT (id) DO NOTHING``): a crash at any instant, and the replay that
follows, leave exactly one row per item. Bucket rules are applied per record (all of its
items, or none): immutable devices refuse times outside their retained window, mutable
devices refuse what would take them past 50,000 rows. A record the database refuses is
isolated by retrying the batch record by record; a database that cannot be reached makes
the whole batch fail, so the consumer loop retries it without committing offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluice import records
from sluice.buckets import MUTABLE_CAP, MUTABLE_CAP_MESSAGE
from sluice.bus import Record
from sluice.config import DeviceInfo
from sluice_storage import metrics
from sluice_storage.rows import RecordRejected, RecordRows, record_rows, window_violation
from sluice_storage.stores import PointStore, PointTx

log = logging.getLogger("sluice.storage")

DeviceLookup = Callable[[str], Awaitable[DeviceInfo | None]]


@dataclass(slots=True)
class Rejection:
    """A record that will never be stored, with a reason for the dead-letter topic."""

    record: Record
    envelope: records.Envelope
    reason: str

    @property
    def stage(self) -> str:
        return self.reason.split(":", 1)[0]


@dataclass
class BatchOutcome:
    rejected: list[Rejection] = field(default_factory=list)
    offered: int = 0  # rows handed to the database (duplicates of earlier attempts included)
    dropped: int = 0  # rows of devices that no longer exist


class BucketWriter:
    def __init__(
        self,
        store: PointStore,
        devices: DeviceLookup,
        *,
        mutable_cap: int = MUTABLE_CAP,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.devices = devices
        self.mutable_cap = mutable_cap
        self.clock = clock

    async def write_batch(self, batch: list[Record]) -> BatchOutcome:
        """Store what can be stored; return the records refused, for the dead-letter topic.

        Raises when the database cannot be reached: nothing of the batch is committed then.
        """
        outcome = BatchOutcome()
        units = await self._prepare(batch, outcome)
        if not units:
            return outcome
        try:
            outcome.rejected += await self._store(units, outcome)
            return outcome
        except Exception as exc:
            if not self.store.is_data_error(exc):
                raise
            log.warning(
                "batch refused by the database; storing record by record",
                extra={"records": len(units), "error": str(exc)[:200]},
            )
        for unit, device in units:
            try:
                outcome.rejected += await self._store([(unit, device)], outcome)
            except Exception as exc:
                if not self.store.is_data_error(exc):
                    raise
                reason = f"database refused the data: {type(exc).__name__}: {exc}"
                outcome.rejected.append(Rejection(unit.record, unit.envelope, reason))
        return outcome

    async def _prepare(
        self, batch: list[Record], outcome: BatchOutcome
    ) -> list[tuple[RecordRows, DeviceInfo]]:
        """Readable records of existing devices whose times fit their bucket."""
        created_at = self.clock()
        units: list[tuple[RecordRows, DeviceInfo]] = []
        seen: set[str] = set()
        for record in batch:
            try:
                unit = record_rows(record, created_at)
            except RecordRejected as exc:
                envelope = records.Envelope.from_headers(record.headers)
                outcome.rejected.append(Rejection(record, envelope, str(exc)))
                continue
            device = await self.devices(unit.envelope.device)
            if device is None:
                outcome.dropped += len(unit.rows)
                log.info(
                    "dropping data of a deleted device",
                    extra={"device": unit.envelope.device, "message_id": unit.envelope.message_id},
                )
                continue
            problem = window_violation(unit, device)
            if problem is not None:
                outcome.rejected.append(Rejection(record, unit.envelope, problem))
                continue
            # The same record twice in one batch (a producer retry) is written once.
            unit.rows = [r for r in unit.rows if r["id"] not in seen]
            seen.update(r["id"] for r in unit.rows)
            units.append((unit, device))
        return units

    async def _store(
        self, units: list[tuple[RecordRows, DeviceInfo]], outcome: BatchOutcome
    ) -> list[Rejection]:
        rejected: list[Rejection] = []
        rows: list[dict[str, Any]] = []
        last_input: dict[str, datetime] = {}
        async with self.store.transaction() as tx:
            counts: dict[str, int] = {}
            for unit, device in units:
                if device.type == "mutable" and unit.rows:
                    refusal = await self._over_cap(tx, unit, counts)
                    if refusal is not None:
                        rejected.append(Rejection(unit.record, unit.envelope, refusal))
                        continue
                rows.extend(unit.rows)
                if unit.rows:
                    last_input[unit.envelope.device] = unit.rows[0]["created_at"]
            await tx.insert(rows)
            await tx.touch(last_input)
        outcome.offered += len(rows)
        metrics.points.labels("offered").inc(len(rows))
        return rejected

    async def _over_cap(self, tx: PointTx, unit: RecordRows, counts: dict[str, int]) -> str | None:
        """The refusal when the record would take a mutable device past its cap, else None.

        Rows already stored (a replay) cost nothing, so a replay is never refused.
        """
        device_id = unit.envelope.device
        if device_id not in counts:
            counts[device_id] = await tx.count(device_id)
        new = len(unit.rows)
        if counts[device_id] + new > self.mutable_cap:
            new -= len(await tx.existing([r["id"] for r in unit.rows]))
            if new and counts[device_id] + new > self.mutable_cap:
                return f"mutable cap: {MUTABLE_CAP_MESSAGE}"
        counts[device_id] += new
        return None
