"""What the relay reads from and writes to SQL: definitions, serial numbers, status."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sluice.db.models import Account, DeviceToken, Plan, Relay, RelayStatus
from sluice.plans import plan_limits
from sluice_gateway.relay.model import RelayDefinition, RelayStats, definition_from_row, utcnow

_MAX_CACHED = 50_000


class _Expiring:
    """A small TTL map; misses (None) expire sooner, as tokens are created without an event."""

    def __init__(self, ttl: float, miss_ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self.clock = clock
        self.items: dict[tuple[str, str], tuple[float, str | None]] = {}

    def get(self, key: tuple[str, str]) -> tuple[bool, str | None]:
        hit = self.items.get(key)
        if hit is None or hit[0] <= self.clock():
            return False, None
        return True, hit[1]

    def put(self, key: tuple[str, str], value: str | None) -> None:
        if len(self.items) >= _MAX_CACHED:
            self.items.clear()
        self.items[key] = (self.clock() + (self.ttl if value is not None else self.miss_ttl), value)


class RelayRepository:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        ttl: float = 30.0,
        miss_ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self._devices = _Expiring(ttl, miss_ttl, clock)  # (account, serial) -> device
        self._serials = _Expiring(ttl, miss_ttl, clock)  # (account, device) -> serial

    async def definitions(self, relay_id: str | None = None) -> list[RelayDefinition]:
        """Active relays of active accounts: one (when ``relay_id`` is given) or all."""
        query: Any = (
            select(Relay, Account.plan)
            .join(Account, Account.id == Relay.account_id)
            .where(Relay.active.is_(True), Account.active.is_(True))
        )
        if relay_id is not None:
            query = query.where(Relay.id == relay_id)
        async with self.sessions() as session:
            rows = (await session.execute(query)).all()
            plans = {p.name: p for p in (await session.scalars(select(Plan))).all()}
        result = []
        for relay, plan_name in rows:
            plan = plans.get(plan_name)
            limits = plan_limits(plan.limits if plan else None, plan_name)
            result.append(definition_from_row(relay, limits))
        return result

    async def device_for_serial(self, account: str, serial: str) -> str | None:
        """The device whose token carries this ``serie_number`` in the account."""
        key = (account, serial)
        found, device = self._devices.get(key)
        if found:
            return device
        async with self.sessions() as session:
            device = await session.scalar(
                select(DeviceToken.device_id)
                .where(DeviceToken.account_id == account, DeviceToken.serie_number == serial)
                .limit(1)
            )
        self._devices.put(key, device)
        return device

    async def serial_of(self, account: str, device: str) -> str | None:
        """The serial number of a device (of its oldest token that has one)."""
        key = (account, device)
        found, serial = self._serials.get(key)
        if found:
            return serial
        async with self.sessions() as session:
            serial = await session.scalar(
                select(DeviceToken.serie_number)
                .where(
                    DeviceToken.account_id == account,
                    DeviceToken.device_id == device,
                    DeviceToken.serie_number.is_not(None),
                )
                .order_by(DeviceToken.created_at, DeviceToken.id)
                .limit(1)
            )
        self._serials.put(key, serial)
        return serial

    def forget_serials(self) -> None:
        """Tokens or devices changed somewhere: look serial numbers up again."""
        self._devices.items.clear()
        self._serials.items.clear()

    async def load_stats(self, relay_id: str) -> RelayStats:
        """Counters so far (kept across owners); the state starts over."""
        async with self.sessions() as session:
            row = await session.get(RelayStatus, relay_id)
        if row is None:
            return RelayStats()
        return RelayStats(
            messages_in=row.messages_in,
            messages_out=row.messages_out,
            dropped=row.dropped,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
        )

    async def save_stats(self, relay_id: str, node: str, stats: RelayStats) -> bool:
        """Write one relay's status; False when the relay is gone (deleted meanwhile)."""
        async with self.sessions() as session:
            row = await session.get(RelayStatus, relay_id)
            if row is None:
                row = RelayStatus(relay_id=relay_id)
                session.add(row)
            row.node = node
            row.state = stats.state
            row.last_error = stats.last_error
            row.last_error_at = stats.last_error_at
            row.connected_at = stats.connected_at
            row.messages_in = stats.messages_in
            row.messages_out = stats.messages_out
            row.dropped = stats.dropped
            row.updated_at = utcnow()
            try:
                await session.commit()
            except IntegrityError:
                return False
        return True
