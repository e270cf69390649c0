"""The Live Inspector hub without Kafka: history, account filter, fan-out, slow clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from sluice_api.inspector import InspectorHub


def event(device: str, n: int, account: str = "acc") -> bytes:
    return orjson.dumps({"type": "publish", "account": account, "device": device, "n": n})


def parse(chunk: bytes) -> list[tuple[str, dict[str, object]]]:
    """(sse event name, data) for every frame in a chunk; comments are skipped."""
    frames = []
    for block in chunk.decode().split("\n\n"):
        name, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
        if data is not None:
            frames.append((name, data))
    return frames


class Announcements:
    def __init__(self, wanted: int = 0) -> None:
        self.calls: list[tuple[str, int]] = []
        self.wanted = wanted
        self.enough = asyncio.Event()

    async def __call__(self, device: str, until: int) -> None:
        self.calls.append((device, until))
        if len(self.calls) >= self.wanted:
            self.enough.set()


async def next_frames(stream: AsyncIterator[bytes]) -> list[tuple[str, dict[str, object]]]:
    return parse(await asyncio.wait_for(anext(stream), 2))


async def test_backlog_is_newest_first_bounded_and_filtered_by_account() -> None:
    hub = InspectorHub(Announcements(), history=4)
    hub.ingest(event("d1", 99, account="intruder"))
    for n in range(5):
        hub.ingest(event("d1", n))
    hub.ingest(event("d2", 7))
    assert [e.seq for e in hub.backlog("intruder", "d1")] == []  # pushed out of the 4 kept
    stream = hub.stream("acc", "d1")
    frames = await next_frames(stream)
    assert [data.get("n") for name, data in frames if name == "message"] == [4, 3, 2, 1]
    assert frames[-1] == ("live", {"backlog": 4})
    await stream.aclose()


async def test_resume_after_last_event_id_skips_what_was_seen() -> None:
    hub = InspectorHub(Announcements())
    hub.ingest(event("d1", 5, account="intruder"))
    assert hub.backlog("acc", "d1") == []  # another account's event is never shown
    for n in range(4):
        hub.ingest(event("d1", n))
    stream = hub.stream("acc", "d1", after=3)  # ids 1 (intruder), 2-5 (n 0-3): n 2, 3 remain
    frames = await next_frames(stream)
    assert [data["n"] for name, data in frames if name == "message"] == [3, 2]
    await stream.aclose()


async def test_live_events_reach_every_watcher_of_the_account_only() -> None:
    announce = Announcements()
    hub = InspectorHub(announce)
    mine, other = hub.stream("acc", "d1"), hub.stream("acc", "d1")
    await next_frames(mine)
    await next_frames(other)
    assert [device for device, _ in announce.calls] == ["d1"]  # announced once, on first watch
    hub.ingest(event("d1", 1, account="intruder"))
    hub.ingest(event("d1", 2))
    assert [d["n"] for _, d in await next_frames(mine)] == [2]
    assert [d["n"] for _, d in await next_frames(other)] == [2]
    await mine.aclose()
    await other.aclose()
    assert hub.backlog("intruder", "d1")
    assert not hub._subs


async def test_slow_client_keeps_the_newest_events_and_is_told_what_it_missed() -> None:
    hub = InspectorHub(Announcements(), client_buffer=10)
    stream = hub.stream("acc", "d1")
    await next_frames(stream)
    for n in range(25):
        hub.ingest(event("d1", n))
    frames = await next_frames(stream)
    assert frames[0] == ("dropped", {"dropped": 15, "total_dropped": 15})
    assert [d["n"] for name, d in frames[1:]] == list(range(15, 25))
    hub.ingest(event("d1", 25))
    assert [name for name, _ in await next_frames(stream)] == ["message"]  # no repeat notice
    await stream.aclose()


async def test_watched_devices_are_announced_again_until_nobody_watches() -> None:
    announce = Announcements(wanted=3)
    hub = InspectorHub(announce, watch_every=0.05, watch_ttl=60)
    stop = asyncio.Event()
    task = asyncio.create_task(hub._keep_announcing(stop))
    stream = hub.stream("acc", "d1")
    await next_frames(stream)
    await asyncio.wait_for(announce.enough.wait(), 5)
    device, until = announce.calls[-1]
    assert device == "d1"
    await stream.aclose()
    count = len(announce.calls)
    await asyncio.sleep(0.2)
    assert len(announce.calls) == count  # no watcher, no announcement
    stop.set()
    await task
    assert until > 0


async def test_unreadable_or_deviceless_events_are_ignored() -> None:
    hub = InspectorHub(Announcements())
    hub.ingest(b"not json")
    hub.ingest(orjson.dumps({"type": "auth_failed", "account": "", "device": ""}))
    hub.ingest(orjson.dumps([1, 2]))
    hub.ingest(None)
    assert hub._recent == {}
