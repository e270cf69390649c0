"""Suspends a device's parser after it hits the time or memory limit, so one hostile or
broken parser costs its partition at most one limit's worth of time per suspension.

The first overrun suspends the device for ``base`` seconds, each further one (without a
successful run in between) for twice as long as the last, up to ``cap``. Saving a new parser
(control event device.changed) lifts the suspension.
"""

from __future__ import annotations

from dataclasses import dataclass

LIMIT_OUTCOMES = frozenset({"timeout", "memory"})


@dataclass(slots=True)
class Suspension:
    until: float  # time.monotonic()
    strikes: int
    reason: str


class ParserGuard:
    """Per-device suspensions; devices are never shared between threads, so no lock."""

    def __init__(self, base: float = 5.0, cap: float = 300.0) -> None:
        self.base = base
        self.cap = cap
        self._devices: dict[str, Suspension] = {}

    @property
    def suspending(self) -> bool:
        """Whether any device is (or was, without a successful run since) suspended."""
        return bool(self._devices)

    def suspended(self, device: str, now: float) -> Suspension | None:
        """The device's suspension while it lasts."""
        if not self._devices:
            return None
        found = self._devices.get(device)
        return found if found is not None and found.until > now else None

    def observe(self, device: str, outcome: str, reason: str, now: float) -> float | None:
        """Account for one run; the seconds of a suspension that starts now, if one does."""
        if outcome in LIMIT_OUTCOMES:
            previous = self._devices.get(device)
            strikes = 1 if previous is None else previous.strikes + 1
            seconds = min(self.cap, self.base * 2.0 ** (strikes - 1))
            self._devices[device] = Suspension(now + seconds, strikes, reason)
            return seconds
        if outcome == "ok" and self._devices:
            self._devices.pop(device, None)
        return None

    def lift(self, device: str) -> None:
        self._devices.pop(device, None)
