"""Retention of immutable devices: delete the chunks that left the retained window.

Deletes go in small batches, each its own short transaction, so ingestion (which writes
the same table) is never blocked for long on PostgreSQL or SQLite. Every storage instance
may run the job: deleting what is already gone is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.buckets import retained_window
from sluice.db.models import DataPoint, Device
from sluice_storage import metrics

log = logging.getLogger("sluice.storage.retention")

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class RetentionJob:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = _now, batch: int = 5000) -> None:
        self.engine = engine
        self.clock = clock
        self.batch = batch

    async def run_once(self) -> int:
        """One pass over every immutable device; returns how many data points it deleted."""
        now = self.clock()
        async with self.engine.connect() as conn:
            devices = (
                await conn.execute(
                    select(Device.id, Device.chunk_period, Device.chunk_retention).where(
                        Device.type == "immutable", Device.chunk_period.is_not(None)
                    )
                )
            ).all()
        deleted = 0
        for device_id, period, retention in devices:
            cutoff = retained_window(now, str(period), retention or 0)[0]
            deleted += await self.expire(device_id, cutoff)
        return deleted

    async def expire(self, device_id: str, cutoff: datetime) -> int:
        """Delete a device's points older than ``cutoff``, a batch per transaction."""
        total = 0
        while True:
            doomed = (
                select(DataPoint.id)
                .where(DataPoint.device_id == device_id, DataPoint.time < cutoff)
                .limit(self.batch)
                .scalar_subquery()
            )
            async with self.engine.begin() as conn:
                result = await conn.execute(delete(DataPoint).where(DataPoint.id.in_(doomed)))
            count = max(result.rowcount or 0, 0)
            total += count
            metrics.retention_deleted.inc(count)
            if count < self.batch:
                break
            await asyncio.sleep(0)  # let the writer's transactions in between batches
        if total:
            log.info(
                "retention deleted expired chunks",
                extra={"device": device_id, "deleted": total, "before": cutoff.isoformat()},
            )
        return total

    async def run(self, stop: asyncio.Event, interval: float, first_delay: float) -> None:
        """Run a pass every ``interval`` seconds until ``stop``; failures wait for the next."""
        delay = first_delay
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                pass
            delay = interval
            try:
                await self.run_once()
                metrics.retention_runs.labels("ok").inc()
            except Exception:
                metrics.retention_runs.labels("failed").inc()
                log.exception("retention pass failed; retrying in %.0f s", interval)
