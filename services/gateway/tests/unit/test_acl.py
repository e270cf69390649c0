"""Per-device topic ACLs (pure)."""

from __future__ import annotations

import pytest

from sluice_gateway.acl import allowed_filter, allowed_topic, covers

RULES = [
    {"action": "deny", "access": "all", "topic": "devices/{device}/secret/#"},
    {"action": "allow", "access": "publish", "topic": "devices/{device}/#"},
    {"action": "allow", "access": "subscribe", "topic": "commands/{device}/+"},
]


@pytest.mark.parametrize(
    ("rule", "wanted", "expected"),
    [
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/+", "a/b", True),
        ("a/+", "a/+", True),
        ("a/+", "a/#", False),
        ("a/+", "a/b/c", False),
        ("#", "#", True),
        ("a/b", "a/+", False),
        ("+/b", "x/b", True),
    ],
)
def test_covers(rule: str, wanted: str, expected: bool) -> None:
    assert covers(rule.split("/"), wanted.split("/")) is expected


def test_no_rules_allow_everything() -> None:
    assert allowed_topic([], "d1", "publish", "any/thing")
    assert allowed_filter([], "d1", "#")


def test_publish_rules_use_the_device_placeholder() -> None:
    assert allowed_topic(RULES, "d1", "publish", "devices/d1/temp")
    assert not allowed_topic(RULES, "d1", "publish", "devices/d2/temp")
    assert not allowed_topic(RULES, "d1", "publish", "devices/d1/secret/key")  # deny comes first


def test_subscribe_needs_a_covering_allow_rule() -> None:
    assert allowed_filter(RULES, "d1", "commands/d1/reboot")
    assert allowed_filter(RULES, "d1", "commands/d1/+")
    assert not allowed_filter(RULES, "d1", "commands/d1/#")
    assert not allowed_filter(RULES, "d1", "#")
    assert not allowed_filter(RULES, "d1", "commands/d2/reboot")
