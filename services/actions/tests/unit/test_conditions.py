"""Condition triggers and lock/unlock hysteresis, by table and by property."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import DeviceInfo
from sluice_actions.conditions import coerce, compare, decide, trigger_matches

BOILER = DeviceInfo(
    id="d1",
    account_id="a1",
    name="boiler",
    type="mutable",
    active=True,
    tags=(("site", "lisbon"),),
    params=(),
    payload_parser=None,
    chunk_period=None,
    chunk_retention=None,
)
OTHER = DeviceInfo(
    id="d2",
    account_id="a1",
    name="fridge",
    type="mutable",
    active=True,
    tags=(("site", "porto"),),
    params=(),
    payload_parser=None,
    chunk_period=None,
    chunk_retention=None,
)


@pytest.mark.parametrize(
    ("op", "actual", "expected", "second", "value_type", "result"),
    [
        (">", 96, "95", None, "number", True),
        (">", 95, "95", None, "number", False),
        (">", "96.5", "95", None, "number", True),  # text that reads as a number is coerced
        (">", "hot", "95", None, "number", False),  # text that does not never matches
        ("<", 89, 90, None, "*", True),
        ("<", True, 90, None, "*", False),  # a boolean is not a number
        ("=", 21, "21.0", None, "number", True),
        ("=", 21, "21.0", None, "string", False),  # as text "21" is not "21.0"
        ("=", 21.0, "21", None, "string", True),  # 21.0 is written 21
        ("=", "on", "true", None, "boolean", True),
        ("=", "maybe", "true", None, "boolean", False),
        ("=", True, "true", None, "*", True),
        ("=", "Open", "open", None, "string", False),  # strings compare exactly
        ("!", "open", "closed", None, "string", True),
        ("!", 5, 5, None, "number", False),
        ("!", None, 5, None, "number", False),  # no value, nothing to compare
        ("><", 50, 10, 90, "number", True),
        ("><", 50, 90, 10, "number", True),  # bounds in either order
        ("><", 10, 10, 90, "number", False),  # strictly between
        ("><", 90, 10, 90, "number", False),
        ("><", 50, 10, None, "number", False),
        ("*", None, None, None, "*", True),
        ("*", "anything", None, None, "number", True),
    ],
)
def test_compare(
    op: str, actual: Any, expected: Any, second: Any, value_type: str, result: bool
) -> None:
    assert compare(op, actual, expected, second, value_type) is result


def test_coerce_by_value_type() -> None:
    assert coerce("1e3", "number") == 1000.0
    assert coerce("nan", "number") is None
    assert coerce(float("inf"), "number") is None
    assert coerce(0, "boolean") is False
    assert coerce(2, "boolean") is None
    assert coerce(96.0, "string") == "96"
    assert coerce(False, "string") == "false"
    with pytest.raises(ValueError):
        coerce(1, "date")


@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e9, 1e9))
def test_greater_and_less_or_equal_partition_numbers(actual: float, limit: float) -> None:
    above = compare(">", actual, str(limit), value_type="number")
    below = compare("<", actual, limit, value_type="number")
    equal = compare("=", actual, limit, value_type="number")
    assert [above, below, equal].count(True) == 1


@given(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_between_is_strict_and_symmetric(actual: float, low: float, high: float) -> None:
    inside = compare("><", actual, low, high, "number")
    assert inside == compare("><", actual, high, low, "number")
    assert inside == (min(low, high) < actual < max(low, high))


def test_trigger_scope_and_variable() -> None:
    by_tag = {"tag_key": "site", "tag_value": "lisbon", "variable": "Temperature", "is": "*"}
    item = {"variable": "temperature", "value": 1}
    assert trigger_matches(by_tag, BOILER, item)
    assert not trigger_matches(by_tag, OTHER, item)
    assert not trigger_matches(by_tag, BOILER, {"variable": "humidity", "value": 1})
    by_device = {"device": "d2", "variable": "temperature", "is": "*"}
    assert not trigger_matches(by_device, BOILER, item)
    assert trigger_matches(by_device, OTHER, item)


HOT = {"device": "d1", "variable": "temperature", "is": ">", "value": "95", "value_type": "number"}
COOL = {**HOT, "is": "<", "value": "90", "unlock": True}


def run(values: list[Any], triggers: list[dict[str, Any]], locked: bool = False) -> list[str]:
    """Feed one message per value; what each did."""
    seen = []
    for value in values:
        decision = decide(triggers, BOILER, [{"variable": "temperature", "value": value}], locked)
        if decision.lock is not None:
            locked = decision.lock
        seen.append("fire" if decision.fire else "unlock" if decision.lock is False else "-")
    return seen


def test_tagoio_example_alert_once_above_95_rearm_below_90() -> None:
    values = [80, 96, 97, 99, 92, 91, 89, 93, 96, 96]
    assert run(values, [HOT, COOL]) == ["-", "fire", "-", "-", "-", "-", "unlock", "-", "fire", "-"]


def test_without_unlock_conditions_every_match_fires() -> None:
    assert run([96, 97, 80, 99], [HOT]) == ["fire", "fire", "-", "fire"]


def test_locked_without_unlock_conditions_stays_silent() -> None:
    """Locked through the API and nothing can unlock it: it never fires on its own."""
    assert run([96, 80, 99], [HOT], locked=True) == ["-", "-", "-"]


def test_triggers_are_or_ed_and_fire_once_per_message() -> None:
    humid = {"device": "d1", "variable": "humidity", "is": ">", "value": 80}
    items = [
        {"variable": "temperature", "value": 99},
        {"variable": "humidity", "value": 85},
        {"variable": "temperature", "value": 20},
    ]
    decision = decide([HOT, humid], BOILER, items, locked=False)
    assert decision.fire
    assert decision.lock is None
    assert [i["value"] for i in decision.items] == [99, 85]  # the matching items


def test_one_message_moves_the_lock_once() -> None:
    """Above and below in one message: it fires and locks; the unlock waits for the next."""
    items = [{"variable": "temperature", "value": 99}, {"variable": "temperature", "value": 80}]
    decision = decide([HOT, COOL], BOILER, items, locked=False)
    assert decision.fire
    assert decision.lock is True
    decision = decide([HOT, COOL], BOILER, items, locked=True)
    assert not decision.fire
    assert decision.lock is False
