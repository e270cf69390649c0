"""Per-device topic ACLs: ordered allow/deny rules that narrow the account namespace.

A rule is ``{"action": "allow"|"deny", "access": "publish"|"subscribe"|"all",
"topic": "<filter, may use {device}>"}``. The first rule that applies decides; when a
device has rules and none applies, access is denied. No rules means no restriction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluice.topicfilter import match_topic

Rule = dict[str, Any]


def _applies(rule: Rule, access: str) -> bool:
    return rule.get("access", "all") in ("all", access)


def _filter(rule: Rule, device_id: str) -> str:
    return str(rule.get("topic", "#")).replace("{device}", device_id)


def allowed_topic(rules: Sequence[Rule], device_id: str, access: str, topic: str) -> bool:
    """May this device publish to (or receive from) this concrete topic?"""
    if not rules:
        return True
    for rule in rules:
        if _applies(rule, access) and match_topic(_filter(rule, device_id), topic):
            return bool(rule.get("action", "allow") == "allow")
    return False


def _overlap(a: list[str], b: list[str]) -> bool:
    """Could some topic match both filters (given as level lists)?"""
    for i, level in enumerate(a):
        if level == "#" or (i < len(b) and b[i] == "#"):
            return True
        if i >= len(b):
            return False
        if level != "+" and b[i] != "+" and level != b[i]:
            return False
    return len(a) == len(b) or (len(b) == len(a) + 1 and b[-1] == "#")


def allowed_filter(rules: Sequence[Rule], device_id: str, topic_filter: str) -> bool:
    """May this device subscribe to the filter? Allowed when an allow rule overlaps it.

    Deny rules that overlap only part of a filter are enforced per message at delivery.
    """
    if not rules:
        return True
    levels = topic_filter.split("/")
    for rule in rules:
        if not _applies(rule, "subscribe"):
            continue
        rule_levels = _filter(rule, device_id).split("/")
        if rule.get("action", "allow") == "deny":
            if rule_levels == levels or (rule_levels == ["#"]):
                return False
            continue
        if _overlap(levels, rule_levels):
            return True
    return False
