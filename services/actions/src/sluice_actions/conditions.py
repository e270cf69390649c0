"""Trigger by variable: condition matching and lock/unlock hysteresis (pure, no I/O).

A condition trigger is ``{device | tag_key+tag_value, variable, is, value, second_value?,
value_type?, unlock?}``. Triggers are OR-ed. With unlock triggers an action is a latch:
firing locks it, and while it is locked only the unlock triggers are checked; one of them
matching unlocks it without firing (TagoIO's "alert once above 95, re-arm below 90").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sluice.config import DeviceInfo
from sluice_actions.triggers import in_scope

Comparable = str | float | bool

_NUMBER = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*", re.ASCII)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
ORDERED = frozenset({"<", ">", "><"})


def as_text(value: Any) -> str:
    """A value as people write it: ``21.5``, ``96`` (not ``96.0``), ``true``, empty for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    numeric = isinstance(value, int | float) or (
        isinstance(value, str) and _NUMBER.fullmatch(value) is not None
    )
    if not numeric:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def as_boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return True if value == 1 else False if value == 0 else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def coerce(value: Any, value_type: str) -> Comparable | None:
    """``value`` as ``value_type`` (string|number|boolean), or None when it is not one."""
    if value_type == "number":
        return as_number(value)
    if value_type == "boolean":
        return as_boolean(value)
    if value_type == "string":
        return None if value is None else as_text(value)
    raise ValueError(f"unknown value_type {value_type!r}")


def _common_type(left: Any, right: Any) -> str:
    """For ``value_type: *``: numbers if both read as numbers, else booleans, else text."""
    if as_number(left) is not None and as_number(right) is not None:
        return "number"
    either_bool = isinstance(left, bool) or isinstance(right, bool)
    if either_bool and as_boolean(left) is not None and as_boolean(right) is not None:
        return "boolean"
    return "string"


def compare(op: str, actual: Any, expected: Any, second: Any = None, value_type: str = "*") -> bool:
    """Whether a data value meets ``op`` (``<`` ``>`` ``=`` ``!`` ``><`` ``*``)."""
    if op == "*":
        return True
    kind = _common_type(actual, expected) if value_type in ("*", "", None) else value_type
    if op in ORDERED:
        kind = "number"  # order only means something for numbers
    left, right = coerce(actual, kind), coerce(expected, kind)
    if left is None or right is None:
        return False
    if op == "=":
        return left == right
    if op == "!":
        return left != right
    if not isinstance(left, float) or not isinstance(right, float):
        return False
    if op == "<":
        return left < right
    if op == ">":
        return left > right
    if op == "><":
        upper = as_number(second)
        if upper is None:
            return False
        low, high = min(right, upper), max(right, upper)
        return low < left < high
    return False


def trigger_matches(
    trigger: Mapping[str, Any], device: DeviceInfo, item: Mapping[str, Any]
) -> bool:
    """One condition trigger against one data item of ``device``."""
    variable = trigger.get("variable")
    if not isinstance(variable, str) or item.get("variable") != variable.strip().lower():
        return False
    if not in_scope(trigger, device):
        return False
    return compare(
        str(trigger.get("is", "")),
        item.get("value"),
        trigger.get("value"),
        trigger.get("second_value"),
        str(trigger.get("value_type") or "*"),
    )


def is_unlock(trigger: Mapping[str, Any]) -> bool:
    return trigger.get("unlock") is True


def concerns(
    triggers: Iterable[Mapping[str, Any]], device: DeviceInfo, variables: set[str]
) -> bool:
    """Whether any trigger looks at one of these variables of this device (cheap pre-check)."""
    for trigger in triggers:
        variable = trigger.get("variable")
        if (
            isinstance(variable, str)
            and variable.strip().lower() in variables
            and in_scope(trigger, device)
        ):
            return True
    return False


@dataclass(slots=True, frozen=True)
class Decision:
    """What one message does to a condition action."""

    fire: bool = False
    lock: bool | None = None  # the new lock state, or None when it stays as it is
    items: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


NOTHING = Decision()


def decide(
    triggers: Sequence[Mapping[str, Any]],
    device: DeviceInfo,
    items: Sequence[Mapping[str, Any]],
    locked: bool,
) -> Decision:
    """Apply one message's items to an action: at most one firing and one lock change."""
    unlockers = [t for t in triggers if is_unlock(t)]
    if locked:
        for trigger in unlockers:
            if any(trigger_matches(trigger, device, item) for item in items):
                return Decision(lock=False)
        return NOTHING
    firing = [t for t in triggers if not is_unlock(t)]
    matched = tuple(item for item in items if any(trigger_matches(t, device, item) for t in firing))
    if not matched:
        return NOTHING
    return Decision(fire=True, lock=True if unlockers else None, items=matched)
