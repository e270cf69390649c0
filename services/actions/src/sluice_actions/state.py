"""What the actions service reads and writes in SQL besides the config cache (adapter).

Lock state: the ``actions`` row is the truth (the API shows and sets it); this process keeps
a copy per action, dropped on every ``action.changed`` control event. A lock change is a
compare-and-set on the row, so when several actions processes evaluate one tag-scoped
action at once, exactly one of them fires it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sluice import config
from sluice.config import TTLCache
from sluice.db.models import Account, Action, utcnow
from sluice_actions.effects import SmtpSettings

log = logging.getLogger("sluice.actions.state")

TOUCH_EVERY = 60.0  # seconds between last_triggered updates of one action


@dataclass(slots=True, frozen=True)
class LockState:
    locked: bool
    changed_by: str | None  # message id of the record that last changed it


class ActionStates:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self.sessions = sessions
        self._locks: TTLCache[str, LockState | None] = TTLCache(self._load_lock, ttl)
        self._smtp: TTLCache[str, SmtpSettings | None] = TTLCache(self._load_smtp, ttl)
        self._touched: dict[str, float] = {}

    async def lock_state(self, action_id: str) -> LockState | None:
        """None when the action no longer exists."""
        return await self._locks.get(action_id)

    async def _load_lock(self, action_id: str) -> LockState | None:
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(Action.locked, Action.lock_changed_by).where(Action.id == action_id)
                )
            ).first()
        return None if row is None else LockState(bool(row[0]), row[1])

    async def change_lock(self, action_id: str, locked: bool, message_id: str) -> bool:
        """Move the lock to ``locked`` if it is not there yet; True when this call moved it."""
        async with self.sessions() as session:
            result: Any = await session.execute(
                update(Action)
                .where(Action.id == action_id, Action.locked == (not locked))
                .values(
                    locked=locked,
                    lock_changed_by=message_id,
                    updated_at=Action.updated_at,  # a lock change is not an edit
                )
            )
            await session.commit()
        moved = bool(result.rowcount == 1)
        # Either way the copy is stale: reload it on next use.
        self._locks.invalidate(action_id)
        return moved

    async def touch(self, action_id: str) -> None:
        """Record ``last_triggered``, at most once a minute per action (it is informative)."""
        now = time.monotonic()
        if now - self._touched.get(action_id, -TOUCH_EVERY) < TOUCH_EVERY:
            return
        self._touched[action_id] = now
        try:
            async with self.sessions() as session:
                await session.execute(
                    update(Action)
                    .where(Action.id == action_id)
                    .values(last_triggered=utcnow(), updated_at=Action.updated_at)
                )
                await session.commit()
        except Exception as exc:  # never fail a batch for a timestamp
            log.warning("last_triggered not saved", extra={"action": action_id, "error": str(exc)})

    async def smtp_settings(self, account_id: str) -> SmtpSettings | None:
        return await self._smtp.get(account_id)

    async def _load_smtp(self, account_id: str) -> SmtpSettings | None:
        async with self.sessions() as session:
            settings = await session.scalar(
                select(Account.settings).where(Account.id == account_id)
            )
        try:
            return SmtpSettings.from_account_settings(settings)
        except (TypeError, ValueError):
            log.warning("unreadable SMTP settings", extra={"account": account_id})
            return None

    def on_control(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == config.ACTION_CHANGED:
            action = event.get("action")
            self._locks.invalidate(str(action) if action else None)
        elif kind == config.ACCOUNT_CHANGED:
            account = event.get("account")
            self._smtp.invalidate(str(account) if account else None)
