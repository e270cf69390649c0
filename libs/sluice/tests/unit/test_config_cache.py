"""The control-event cache: a lookup after an invalidation never gets what was loaded
before it (a new action must fire from the first message after its control event)."""

from __future__ import annotations

import asyncio

from sluice.config import TTLCache


def test_a_lookup_after_an_invalidation_does_not_share_the_load_before_it() -> None:
    async def scenario() -> tuple[str, str, str, int]:
        version = "old"
        release = asyncio.Event()
        loads = 0

        async def load(key: str) -> str:
            nonlocal loads
            loads += 1
            seen = version  # read "from the database" when the load starts
            await release.wait()
            return f"{key}:{seen}"

        cache: TTLCache[str, str] = TTLCache(load, ttl=30.0)
        before = asyncio.ensure_future(cache.get("actions"))
        await asyncio.sleep(0)  # the first load is in flight, holding the old rows
        version = "new"
        cache.invalidate("actions")  # the control event
        after = asyncio.ensure_future(cache.get("actions"))
        await asyncio.sleep(0)
        release.set()
        first, second = await before, await after
        return first, second, await cache.get("actions"), loads

    first, second, cached, loads = asyncio.run(scenario())
    assert first == "actions:old"  # asked before the event: may get the old rows
    assert second == "actions:new"  # asked after it: a load of its own
    assert cached == "actions:new"  # and only the new rows are kept
    assert loads == 2


def test_concurrent_misses_share_one_load_and_invalidate_all_clears_loads() -> None:
    async def scenario() -> tuple[list[int], int]:
        loads = 0
        release = asyncio.Event()

        async def load(key: int) -> int:
            nonlocal loads
            loads += 1
            number = loads
            await release.wait()
            return key * 10 + number

        cache: TTLCache[int, int] = TTLCache(load, ttl=30.0)
        shared = [asyncio.ensure_future(cache.get(1)) for _ in range(3)]
        await asyncio.sleep(0)
        cache.invalidate()
        fresh = asyncio.ensure_future(cache.get(1))
        await asyncio.sleep(0)
        release.set()
        return [*(await asyncio.gather(*shared)), await fresh], loads

    values, loads = asyncio.run(scenario())
    assert values == [11, 11, 11, 12]
    assert loads == 2
