"""Rules a device's settings must follow (pure): bucket chunks, type changes, topic ACLs."""

from __future__ import annotations

import re
from typing import Any

from sluice.topicfilter import validate_topic_filter

CHUNK_PERIODS = ("day", "week", "month", "quarter")
MAX_RETENTION = {"day": 31, "week": 26, "month": 36, "quarter": 36}
DEFAULT_CHUNK_PERIOD = "month"
DEFAULT_CHUNK_RETENTION = 12

ACL_ACTIONS = ("allow", "deny")
ACL_ACCESS = ("publish", "subscribe", "all")
MAX_ACL_RULES = 100
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_SAMPLE_DEVICE = "0" * 24


def retention_problem(period: str, retention: int) -> str | None:
    limit = MAX_RETENTION[period]
    if not 0 <= retention <= limit:
        return f"chunk_retention for period '{period}' must be between 0 and {limit}"
    return None


def type_change_problem(active: bool, data_points: int) -> str | None:
    """Why a device may not switch between mutable and immutable now (as in TagoIO)."""
    steps = []
    if active:
        steps.append("deactivate it (active: false)")
    if data_points:
        steps.append(f"empty its bucket (it holds {data_points} data points)")
    if not steps:
        return None
    return "Only an inactive, empty device can change type: " + " and ".join(steps) + " first"


def validate_topic_acl(rules: Any) -> list[dict[str, str]]:
    """The rules in stored form, or ValueError naming the rule and the field to fix."""
    if not isinstance(rules, list):
        raise ValueError("topic_acl must be a list of rules")
    if len(rules) > MAX_ACL_RULES:
        raise ValueError(f"topic_acl has {len(rules)} rules; at most {MAX_ACL_RULES} are allowed")
    clean = []
    for n, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise ValueError(f"topic_acl[{n}] must be an object with action, access and topic")
        unknown = set(rule) - {"action", "access", "topic"}
        if unknown:
            raise ValueError(
                f"topic_acl[{n}] has unknown field(s) {', '.join(sorted(unknown))}; "
                "a rule has action, access and topic"
            )
        action = rule.get("action", "allow")
        access = rule.get("access", "all")
        topic = rule.get("topic")
        if action not in ACL_ACTIONS:
            raise ValueError(f"topic_acl[{n}].action must be 'allow' or 'deny'")
        if access not in ACL_ACCESS:
            raise ValueError(f"topic_acl[{n}].access must be 'publish', 'subscribe' or 'all'")
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic_acl[{n}].topic is required (a topic filter)")
        for placeholder in _PLACEHOLDER.findall(topic):
            if placeholder != "{device}":
                raise ValueError(
                    f"topic_acl[{n}].topic uses {placeholder}; the only placeholder is {{device}}"
                )
        concrete = topic.replace("{device}", _SAMPLE_DEVICE)
        if "{" in concrete or "}" in concrete:
            raise ValueError(f"topic_acl[{n}].topic has an unclosed brace")
        problem = validate_topic_filter(concrete)
        if problem:
            raise ValueError(f"topic_acl[{n}].topic '{topic}': {problem}")
        clean.append({"action": action, "access": access, "topic": topic})
    return clean
