"""``expire_time`` as TagoIO takes it: ``never``, an ISO time, or relative (``3 hours``)."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.dataitems import parse_relative, parse_time
from sluice_api.errors import ApiError


def parse_expire_time(value: str | None, now: datetime | None = None) -> datetime | None:
    now = now or datetime.now(UTC)
    if value is None or value.strip().lower() in ("", "never"):
        return None
    relative = parse_relative(value)
    if relative is not None:
        return now + relative
    try:
        when = parse_time(value, now)
    except ValueError:
        raise ApiError(
            400, f"Invalid expire_time '{value}': use 'never', an ISO 8601 time or e.g. '3 hours'"
        ) from None
    if when <= now:
        raise ApiError(400, f"expire_time '{value}' is in the past")
    return when
