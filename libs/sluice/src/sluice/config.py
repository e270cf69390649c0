"""Configuration as services see it: short-TTL caches over SQL, invalidated by control events.

The API is the only writer of accounts, devices, tokens and actions. After each change it
publishes a control event; every service tails ``sluice.control`` and drops what the event
names, so a change applies everywhere within a second while reads stay in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sluice import records
from sluice.db.models import Account, Action, Device, DeviceParam, DeviceToken, Plan

log = logging.getLogger("sluice.config")

# Control event types.
TOKEN_DELETED = "token.deleted"
DEVICE_CHANGED = "device.changed"
DEVICE_DELETED = "device.deleted"
ACTION_CHANGED = "action.changed"
ACCOUNT_CHANGED = "account.changed"
PLAN_CHANGED = "plan.changed"
RELAY_CHANGED = "relay.changed"
# A Live Inspector client watches a device (fields device, until = epoch ms): gateways emit
# per-message events for it until then.
INSPECTOR_WATCH = "inspector.watch"


@dataclass(slots=True, frozen=True)
class DeviceInfo:
    id: str
    account_id: str
    name: str
    type: str
    active: bool
    tags: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, str, bool], ...]
    payload_parser: str | None
    chunk_period: str | None
    chunk_retention: int | None
    topic_acl: tuple[dict[str, Any], ...] = ()

    def param(self, key: str) -> str | None:
        for k, v, _ in self.params:
            if k == key:
                return v
        return None

    def context(self) -> dict[str, Any]:
        """The ``device`` global a payload parser sees."""
        return {
            "id": self.id,
            "name": self.name,
            "tags": [{"key": k, "value": v} for k, v in self.tags],
            "params": [{"key": k, "value": v, "sent": s} for k, v, s in self.params],
        }


@dataclass(slots=True, frozen=True)
class TokenInfo:
    token_id: str
    token_hash: str
    device_id: str
    account_id: str
    permission: str
    expire_at: datetime | None
    device: DeviceInfo
    plan: str
    limits: dict[str, Any] = field(default_factory=dict)

    def expired(self, now: datetime) -> bool:
        return self.expire_at is not None and self.expire_at <= now


@dataclass(slots=True, frozen=True)
class ActionInfo:
    id: str
    account_id: str
    name: str
    type: str
    trigger: tuple[dict[str, Any], ...]
    action: dict[str, Any]
    locked: bool


K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """An async read-through cache; concurrent misses for one key share one load.

    An invalidation that lands while a load is in flight wins: the loaded value is
    returned to the callers that asked before the event but not cached, and a lookup after
    the event starts a load of its own, so no caller sees a row older than an event it
    follows.
    """

    def __init__(self, loader: Callable[[K], Awaitable[V]], ttl: float) -> None:
        self._loader = loader
        self._ttl = ttl
        self._items: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation = 0

    async def get(self, key: K) -> V:
        hit = self._items.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        generation = self._generation
        try:
            value = await self._loader(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here; waiters get it re-raised
            raise
        finally:
            if self._loading.get(key) is future:  # not replaced by a load after an event
                del self._loading[key]
        if generation == self._generation:
            self._items[key] = (time.monotonic() + self._ttl, value)
        future.set_result(value)
        return value

    def peek(self, key: K) -> V | None:
        hit = self._items.get(key)
        return hit[1] if hit is not None else None

    def invalidate(self, key: K | None = None) -> None:
        self._generation += 1
        if key is None:
            self._items.clear()
            self._loading.clear()
        else:
            self._items.pop(key, None)
            self._loading.pop(key, None)


class ConfigStore:
    """Devices, tokens and actions by key, cached; ``apply`` takes a control event."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float = 30.0) -> None:
        self.sessions = sessions
        self.devices: TTLCache[str, DeviceInfo | None] = TTLCache(self._load_device, ttl)
        self.tokens: TTLCache[str, TokenInfo | None] = TTLCache(self._load_token, ttl)
        self.actions: TTLCache[str, list[ActionInfo]] = TTLCache(self._load_actions, ttl)
        self.account_devices: TTLCache[str, list[DeviceInfo]] = TTLCache(
            self._load_account_devices, ttl
        )
        self.listeners: list[Callable[[dict[str, Any]], Awaitable[None] | None]] = []

    async def device(self, device_id: str) -> DeviceInfo | None:
        return await self.devices.get(device_id)

    async def token(self, token_hash: str) -> TokenInfo | None:
        return await self.tokens.get(token_hash)

    async def account_actions(self, account_id: str) -> list[ActionInfo]:
        return await self.actions.get(account_id)

    async def _load_device(self, device_id: str) -> DeviceInfo | None:
        async with self.sessions() as session:
            device = await session.get(Device, device_id)
            if device is None:
                return None
            params = (
                await session.scalars(select(DeviceParam).where(DeviceParam.device_id == device_id))
            ).all()
            return _device_info(device, params)

    async def _load_account_devices(self, account_id: str) -> list[DeviceInfo]:
        async with self.sessions() as session:
            devices = (
                await session.scalars(select(Device).where(Device.account_id == account_id))
            ).all()
            return [_device_info(d, ()) for d in devices]

    async def _load_token(self, token_hash: str) -> TokenInfo | None:
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(DeviceToken, Device, Account)
                    .join(Device, Device.id == DeviceToken.device_id)
                    .join(Account, Account.id == Device.account_id)
                    .where(DeviceToken.token_hash == token_hash)
                )
            ).first()
            if row is None:
                return None
            token, device, account = row
            params = (
                await session.scalars(select(DeviceParam).where(DeviceParam.device_id == device.id))
            ).all()
            plan = await session.get(Plan, account.plan)
            info = _device_info(device, params)
            if not account.active:
                info = _replace_active(info, False)
            return TokenInfo(
                token_id=token.id,
                token_hash=token_hash,
                device_id=device.id,
                account_id=device.account_id,
                permission=token.permission,
                expire_at=token.expire_at,
                device=info,
                plan=account.plan,
                limits=dict(plan.limits) if plan else {},
            )

    async def _load_actions(self, account_id: str) -> list[ActionInfo]:
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(Action).where(Action.account_id == account_id, Action.active.is_(True))
                )
            ).all()
            return [
                ActionInfo(
                    id=a.id,
                    account_id=a.account_id,
                    name=a.name,
                    type=a.type,
                    trigger=tuple(a.trigger or ()),
                    action=dict(a.action or {}),
                    locked=a.locked,
                )
                for a in rows
            ]

    async def apply(self, event: dict[str, Any]) -> None:
        """Drop what a control event says has changed, then tell the listeners."""
        kind = event.get("type", "")
        device = event.get("device")
        account = event.get("account")
        if kind in (DEVICE_CHANGED, DEVICE_DELETED, TOKEN_DELETED, ACCOUNT_CHANGED, PLAN_CHANGED):
            if device:
                self.devices.invalidate(device)
            # Token entries embed device and account state: drop them all (cheap to reload).
            self.tokens.invalidate()
            if account:
                self.account_devices.invalidate(account)
            else:
                self.account_devices.invalidate()
        if kind == ACTION_CHANGED:
            if account:
                self.actions.invalidate(account)
            else:
                self.actions.invalidate()
        for listener in self.listeners:
            result = listener(event)
            if result is not None:
                await result


def _device_info(device: Device, params: Any) -> DeviceInfo:
    return DeviceInfo(
        id=device.id,
        account_id=device.account_id,
        name=device.name,
        type=device.type,
        active=device.active,
        tags=tuple((str(t.get("key", "")), str(t.get("value", ""))) for t in device.tags or ()),
        params=tuple((p.key, p.value, p.sent) for p in params),
        payload_parser=device.payload_parser,
        chunk_period=device.chunk_period,
        chunk_retention=device.chunk_retention,
        topic_acl=tuple(device.topic_acl or ()),
    )


def _replace_active(info: DeviceInfo, active: bool) -> DeviceInfo:
    from dataclasses import replace

    return replace(info, active=active)


def control_event(kind: str, **fields: Any) -> bytes:
    return records.dumps({"type": kind, "at": records.now_ms(), **fields})


async def follow_control(tail: Any, store: ConfigStore, stop: asyncio.Event) -> None:
    """Apply every control event from a :class:`sluice.bus.Tail` to ``store``."""
    async for batch in tail.batches(stop):
        for record in batch:
            try:
                event = records.loads(record.value)
            except ValueError:
                log.warning("unreadable control event at offset %s", record.offset)
                continue
            if isinstance(event, dict):
                await store.apply(event)
