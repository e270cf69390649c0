"""Bucket rules as TagoIO has them: chunks and retention of immutable devices, the mutable cap.

Pure arithmetic on UTC datetimes, shared by the storage service (which enforces the rules)
and the API (which reports them early and lists chunks). Weeks start on Monday.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

ChunkPeriod = Literal["day", "week", "month", "quarter"]
PERIODS: tuple[ChunkPeriod, ...] = ("day", "week", "month", "quarter")
MAX_RETENTION: dict[str, int] = {"day": 31, "week": 26, "month": 36, "quarter": 36}

MUTABLE_CAP = 50_000
# TagoIO's own wording, which scripts written against TagoIO may match on.
MUTABLE_CAP_MESSAGE = f"The device has reached the limit of {MUTABLE_CAP} data registers"

_MONTHS_PER = {"month": 1, "quarter": 3}


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def chunk_start(when: datetime, period: str) -> datetime:
    """The first instant of the chunk holding ``when``."""
    when = _utc(when)
    day = when.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period in _MONTHS_PER:
        step = _MONTHS_PER[period]
        month = (day.month - 1) // step * step + 1
        return day.replace(month=month, day=1)
    raise ValueError(f"unknown chunk period {period!r}; use one of {', '.join(PERIODS)}")


def shift_chunks(start: datetime, period: str, count: int) -> datetime:
    """The start of the chunk ``count`` chunks after (or before, if negative) ``start``'s."""
    start = chunk_start(start, period)
    if period == "day":
        return start + timedelta(days=count)
    if period == "week":
        return start + timedelta(weeks=count)
    months = start.year * 12 + start.month - 1 + count * _MONTHS_PER[period]
    return start.replace(year=months // 12, month=months % 12 + 1)


def chunk_bounds(when: datetime, period: str) -> tuple[datetime, datetime]:
    """``[start, end)`` of the chunk holding ``when``."""
    start = chunk_start(when, period)
    return start, shift_chunks(start, period, 1)


def retained_window(now: datetime, period: str, retention: int) -> tuple[datetime, datetime]:
    """``[start, end)`` of the times an immutable device accepts and keeps.

    It starts ``retention`` chunks before the current one (0 keeps only the current chunk)
    and ends with tomorrow (UTC), so clocks a little ahead are not refused.
    """
    if retention < 0:
        raise ValueError("chunk_retention must not be negative")
    start = shift_chunks(chunk_start(now, period), period, -retention)
    today = chunk_start(now, "day")
    return start, today + timedelta(days=2)


def window_text(window: tuple[datetime, datetime]) -> str:
    """TagoIO's wording for the window, with the last accepted day (inclusive)."""
    start, end = window
    last_day = end - timedelta(days=1)
    return f"Time must be between {start.date().isoformat()} and {last_day.date().isoformat()}"


def chunks_between(first: datetime, last: datetime, period: str) -> list[tuple[datetime, datetime]]:
    """Every chunk from the one holding ``first`` to the one holding ``last``, oldest first."""
    out: list[tuple[datetime, datetime]] = []
    start = chunk_start(first, period)
    last = _utc(last)
    while start <= last:
        end = shift_chunks(start, period, 1)
        out.append((start, end))
        start = end
    return out


def chunk_id(start: datetime, end: datetime) -> str:
    """TagoIO's chunk id: unix seconds of the start and of the last second, ``from_to``."""
    return f"{int(start.timestamp())}_{int(end.timestamp()) - 1}"


def parse_chunk_id(text: str, period: str) -> tuple[datetime, datetime]:
    """The ``[start, end)`` a chunk id names; ValueError unless it is a chunk of ``period``."""
    head, sep, _ = text.partition("_")
    if not sep or not head.isdigit():
        raise ValueError(f"'{text}' is not a chunk id (expected '<from>_<to>' unix seconds)")
    start = datetime.fromtimestamp(int(head), UTC)
    if chunk_start(start, period) != start:
        raise ValueError(f"'{text}' does not start a {period} chunk")
    bounds = chunk_bounds(start, period)
    if chunk_id(*bounds) != text:
        raise ValueError(f"'{text}' is not a {period} chunk id")
    return bounds
