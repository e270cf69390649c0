"""Which actions a message fires (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sluice.config import ActionInfo, DeviceInfo
from sluice.topicfilter import match_topic


def in_scope(trigger: Mapping[str, Any], device: DeviceInfo) -> bool:
    """A trigger names one device, or devices by tag key (and value, when given)."""
    wanted = trigger.get("device")
    if wanted:
        return bool(wanted == device.id)
    key = trigger.get("tag_key")
    if not key:
        return False
    value = trigger.get("tag_value")
    return any(k == key and (value in (None, "") or v == value) for k, v in device.tags)


def topic_actions(
    actions: Iterable[ActionInfo], device: DeviceInfo, topic: str
) -> list[ActionInfo]:
    """``mqtt_topic`` actions whose triggers (OR-ed) match; each action at most once."""
    fired = []
    for action in actions:
        if action.type != "mqtt_topic":
            continue
        for trigger in action.trigger:
            filt = trigger.get("topic")
            if isinstance(filt, str) and in_scope(trigger, device) and match_topic(filt, topic):
                fired.append(action)
                break
    return fired
