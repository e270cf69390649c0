"""Plan limits in fixed one-minute windows, counted per account and shared across processes.

``hit()`` is synchronous and cheap (the gateway calls it per message): it decides from the
counts this process has seen plus its own increments. With Redis, a background ``sync()``
pushes this process's increments every ``interval`` and reads back everyone's totals, so
all gateways and API processes enforce one account-wide count; a burst can overshoot a
limit by at most what the cluster accepts in one interval. Without Redis (one node, the
embedded default) the counts are this process's own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sluice.limits")

WINDOW = 60.0


class WindowCounter:
    def __init__(
        self,
        redis: Any | None = None,
        *,
        prefix: str = "sluice:limit:",
        interval: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.interval = interval
        self.clock = clock
        # (key, window) -> [count everyone had at the last sync, ours not yet synced]
        self._counts: dict[tuple[str, int], list[int]] = {}
        self._watched: dict[str, int] = {}  # keys synced even before this process counts them

    def watch(self, key: str) -> None:
        """Keep ``key``'s shared count fresh, so a first hit here already sees the others'."""
        self._watched[key] = self._watched.get(key, 0) + 1

    def unwatch(self, key: str) -> None:
        left = self._watched.get(key, 0) - 1
        if left > 0:
            self._watched[key] = left
        else:
            self._watched.pop(key, None)

    def _window(self, now: float) -> int:
        return int(now // WINDOW)

    def count(self, key: str) -> int:
        window = self._window(self.clock())
        seen, pending = self._counts.get((key, window), (0, 0))
        return seen + pending

    def hit(self, key: str, limit: int, amount: int = 1) -> float | None:
        """Count ``amount`` against ``limit`` for this window; None when allowed, else the
        seconds until the window resets (nothing is counted for a refused hit)."""
        now = self.clock()
        window = self._window(now)
        entry = self._counts.get((key, window))
        if entry is None:
            entry = self._counts[(key, window)] = [0, 0]
            if len(self._counts) > 200_000:
                self._forget(window)
        if entry[0] + entry[1] + amount > limit:
            return max(1.0, math.ceil((window + 1) * WINDOW - now))
        entry[1] += amount
        return None

    def _forget(self, window: int) -> None:
        self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}

    async def sync(self) -> None:
        """Push this process's increments to Redis and read back the shared totals."""
        if self.redis is None:
            return
        window = self._window(self.clock())
        self._forget(window)
        for key in self._watched:
            self._counts.setdefault((key, window), [0, 0])
        keys = list(self._counts)
        if not keys:
            return
        pipe = self.redis.pipeline(transaction=False)
        sent = []
        for key, win in keys:
            entry = self._counts[(key, win)]
            name = f"{self.prefix}{key}:{win}"
            pipe.incrby(name, entry[1])
            pipe.expire(name, int(WINDOW * 2))
            sent.append(entry[1])
        results = await pipe.execute()
        for index, (key_window, amount) in enumerate(zip(keys, sent, strict=True)):
            current = self._counts.get(key_window)
            if current is None:
                continue
            current[0] = int(results[index * 2])
            current[1] -= amount  # hits that landed while we waited stay pending

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sync()
            except Exception as exc:  # Redis down: keep counting locally, say so once a while
                log.warning("rate-limit counts not shared (Redis: %s)", exc)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass


class Gauges:
    """Per-account gauges (e.g. open connections) summed over live processes.

    Each process writes its own values into a Redis hash per gauge name and refreshes a
    liveness key; values of processes whose liveness key expired are ignored.
    """

    def __init__(self, redis: Any | None, node: str, *, prefix: str = "sluice:gauge:") -> None:
        self.redis = redis
        self.node = node
        self.prefix = prefix
        self.local: dict[str, int] = {}
        self.others: dict[str, int] = {}

    def add(self, key: str, delta: int) -> None:
        value = self.local.get(key, 0) + delta
        if value:
            self.local[key] = value
        else:
            self.local.pop(key, None)

    def total(self, key: str) -> int:
        return self.local.get(key, 0) + self.others.get(key, 0)

    async def sync(self) -> None:
        if self.redis is None:
            return
        mine = f"{self.prefix}node:{self.node}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"{self.prefix}alive:{self.node}", 1, ex=10)
        pipe.delete(mine)
        if self.local:
            pipe.hset(mine, mapping=dict(self.local))
        pipe.expire(mine, 10)
        await pipe.execute()
        others: dict[str, int] = {}
        async for name in self.redis.scan_iter(match=f"{self.prefix}node:*", count=500):
            node = (name.decode() if isinstance(name, bytes) else name).rsplit(":", 1)[1]
            if node == self.node or not await self.redis.exists(f"{self.prefix}alive:{node}"):
                continue
            for key, value in (await self.redis.hgetall(name)).items():
                k = key.decode() if isinstance(key, bytes) else key
                others[k] = others.get(k, 0) + int(value)
        self.others = others

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                await self.sync()
            except Exception as exc:
                log.warning("connection counts not shared (Redis: %s)", exc)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass


def connect_redis(url: str | None) -> Any | None:
    """An asyncio Redis client for ``SLUICE_REDIS_URL``, or None (counts stay per process)."""
    if not url:
        return None
    import redis.asyncio as aioredis

    return aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
