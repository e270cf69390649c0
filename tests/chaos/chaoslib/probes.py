"""What the suite reads from the running system: process RSS and CPU time from /proc, a
service's Prometheus metrics, and the rows storage wrote per sequence number."""

from __future__ import annotations

import asyncio
import os
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select

from chaoslib.report import SETTLE
from sluice.db import create_engine, session_factory
from sluice.db.models import DataPoint
from sluice.testing.stack import Stack

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def pid_of(stack: Stack, name: str) -> int:
    proc = stack.processes[name].process
    assert proc is not None
    return proc.pid


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def idle_cpu(stack: Stack, names: Iterable[str], seconds: float) -> dict[str, float]:
    """CPU used per second of wall time by each service over an idle period."""
    pids = {name: pid_of(stack, name) for name in names}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    return {name: round((cpu_seconds(pid) - before[name]) / wall, 3) for name, pid in pids.items()}


def metrics(stack: Stack, name: str) -> str:
    env = stack.processes[name].env
    if name == "api":
        url = f"http://127.0.0.1:{env['SLUICE_API_PORT']}/metrics"
    else:
        url = f"http://127.0.0.1:{env['SLUICE_HEALTH_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
        return text


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? ([-+0-9.eEinfINFNa]+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match[1] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match[2])
    return total


async def _seq_rows(database_url: str, devices: list[str], variable: str) -> Counter[int]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            stmt = (
                select(DataPoint.value_number, func.count())
                .where(DataPoint.device_id.in_(devices), DataPoint.variable == variable)
                .group_by(DataPoint.value_number)
            )
            found: Counter[int] = Counter()
            for value, count in (await session.execute(stmt)).all():
                found[int(value)] += int(count)
            return found
    finally:
        await engine.dispose()


def seq_rows(database_url: str, devices: list[str], variable: str = "seq") -> Counter[int]:
    """Rows per sequence number stored for ``devices`` (read straight from the database)."""
    return asyncio.run(_seq_rows(database_url, devices, variable))


async def _devices_with_rows(database_url: str, devices: list[str]) -> set[str]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            stmt = select(DataPoint.device_id).where(DataPoint.device_id.in_(devices)).distinct()
            return {str(device) for device in (await session.scalars(stmt)).all()}
    finally:
        await engine.dispose()


def devices_with_rows(database_url: str, devices: list[str]) -> set[str]:
    """Which of ``devices`` have at least one stored row."""
    return asyncio.run(_devices_with_rows(database_url, devices))


def wait_stored(
    database_url: str,
    devices: list[str],
    expected: Iterable[int],
    *,
    timeout: float = 180,
    settle: float = SETTLE,
    stall: float | None = None,
) -> Counter[int]:
    """Rows per sequence number once ``expected`` are all stored and the total has not
    changed for ``settle`` seconds (so late replays show up as duplicates).

    Returns what is there at ``timeout`` — or, with ``stall``, once nothing has changed for
    that long while some are still missing — so the caller can report what never arrived.
    """
    wanted = set(expected)
    deadline = time.monotonic() + timeout
    last_total, stable_since = -1, time.monotonic()
    while True:
        rows = seq_rows(database_url, devices)
        total = sum(rows.values())
        now = time.monotonic()
        if total != last_total:
            last_total, stable_since = total, now
        complete = wanted.issubset(rows)
        if (complete and now - stable_since >= settle) or now > deadline:
            return rows
        if stall is not None and not complete and now - stable_since >= stall:
            return rows
        time.sleep(0.5)
