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


def covers(rule: list[str], wanted: list[str]) -> bool:
    """Does every topic the ``wanted`` filter can match also match ``rule`` (level lists)?"""
    for i, level in enumerate(rule):
        if level == "#":
            return True
        if i >= len(wanted):
            return False
        if wanted[i] == "#":
            return False
        if level != "+" and level != wanted[i]:
            return False
    return len(wanted) == len(rule)


def allowed_filter(rules: Sequence[Rule], device_id: str, topic_filter: str) -> bool:
    """May this device subscribe to the filter? Only when an allow rule covers all of it.

    A deny rule that covers the whole filter refuses it; one that covers part of it is
    enforced per message at delivery (see ``allowed_topic``).
    """
    if not rules:
        return True
    levels = topic_filter.split("/")
    for rule in rules:
        if not _applies(rule, "subscribe"):
            continue
        if covers(_filter(rule, device_id).split("/"), levels):
            return bool(rule.get("action", "allow") == "allow")
    return False
