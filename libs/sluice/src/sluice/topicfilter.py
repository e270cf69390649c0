"""MQTT topic names and filters: validation, matching and a subscription index.

Matching follows MQTT 5.0 §4.7: ``+`` matches exactly one level, ``#`` matches the parent
level and any number of levels below it, empty levels are levels, and a wildcard in the
first level never matches a topic whose name starts with ``$``.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_TOPIC_BYTES = 65535
_SHARE_PREFIX = "$share/"


def _common_problem(text: str, what: str) -> str | None:
    if not text:
        return f"a topic {what} must not be empty"
    if "\x00" in text:
        return f"a topic {what} must not contain the NUL character (U+0000)"
    # Only long strings can exceed the limit: a character is at most 4 bytes of UTF-8.
    if len(text) > MAX_TOPIC_BYTES // 4:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return f"a topic {what} must be valid UTF-8"
        if size > MAX_TOPIC_BYTES:
            return f"a topic {what} must be at most {MAX_TOPIC_BYTES} bytes (got {size})"
    return None


def validate_topic_name(topic: str) -> str | None:
    """None when ``topic`` is a valid topic name to publish to, else what is wrong with it."""
    problem = _common_problem(topic, "name")
    if problem is not None:
        return problem
    if "+" in topic or "#" in topic:
        return "a topic name must not contain the wildcards '+' or '#' (they are for filters)"
    return None


def validate_topic_filter(filter: str) -> str | None:
    """None when ``filter`` is a valid subscription filter, else what is wrong with it."""
    problem = _common_problem(filter, "filter")
    if problem is not None:
        return problem
    if "+" not in filter and "#" not in filter:
        return None
    levels = filter.split("/")
    last = len(levels) - 1
    for position, level in enumerate(levels):
        if "#" in level:
            if level != "#":
                return "'#' must be a whole level of a topic filter (like 'a/#', not 'a#')"
            if position != last:
                return "'#' must be the last level of a topic filter (like 'a/#', not '#/a')"
        elif "+" in level and level != "+":
            return "'+' must be a whole level of a topic filter (like 'a/+/c', not 'a+')"
    return None


def match_topic(filter: str, topic: str) -> bool:
    """True when the topic name ``topic`` matches the (valid) topic filter ``filter``."""
    if filter == topic:
        return True
    if "+" not in filter and "#" not in filter:
        return False
    if topic[:1] == "$" and filter[:1] in ("+", "#"):
        return False
    levels = topic.split("/")
    count = len(levels)
    wanted_levels = filter.split("/")
    for position, wanted in enumerate(wanted_levels):
        if wanted == "#":
            # Every level before this one matched, so the parent level exists.
            return True
        if position >= count:
            return False
        if wanted != "+" and wanted != levels[position]:
            return False
    return len(wanted_levels) == count


def parse_shared(filter: str) -> tuple[str | None, str]:
    """Split ``$share/{group}/{filter}`` into ``(group, filter)``; ``(None, filter)`` otherwise.

    Raises ValueError for a malformed shared subscription. The inner filter is returned
    as is; validate it with :func:`validate_topic_filter`.
    """
    if not filter.startswith(_SHARE_PREFIX):
        if filter == "$share":
            raise ValueError("a shared subscription must look like $share/{group}/{filter}")
        return None, filter
    group, sep, inner = filter[len(_SHARE_PREFIX) :].partition("/")
    if not group:
        raise ValueError("a shared subscription needs a group name: $share/{group}/{filter}")
    if "+" in group or "#" in group:
        raise ValueError(f"the share group name {group!r} must not contain '+' or '#'")
    if not sep or not inner:
        raise ValueError(
            f"a shared subscription needs a topic filter after the group: $share/{group}/{{filter}}"
        )
    return group, inner


class _Node(Generic[T]):
    __slots__ = ("children", "entries")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.entries: list[tuple[str, T]] = []


class TopicTree(Generic[T]):
    """Topic filters mapped to values, in a trie keyed by level, for fast matching.

    Filters are expected to be valid (see :func:`validate_topic_filter`). The same filter
    may hold several values and the same value may be added under several filters.
    """

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, filter: str, value: T) -> None:
        """Index ``value`` under ``filter``."""
        node = self._root
        for level in filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        node.entries.append((filter, value))
        self._size += 1

    def remove(self, filter: str, value: T) -> bool:
        """Remove one ``value`` indexed under ``filter``; False when it was not there."""
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for level in filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        entries = node.entries
        for position, (_filter, held) in enumerate(entries):
            if held is value or held == value:
                del entries[position]
                break
        else:
            return False
        self._size -= 1
        # Prune nodes left with neither values nor children, so the trie does not grow forever.
        while path and not node.entries and not node.children:
            parent, level = path.pop()
            del parent.children[level]
            node = parent
        return True

    def match(self, topic: str) -> list[tuple[str, T]]:
        """Every ``(filter, value)`` whose filter matches the topic name ``topic``."""
        found: list[tuple[str, T]] = []
        levels = topic.split("/")
        count = len(levels)
        dollar = topic[:1] == "$"
        # Iterative walk: a topic may have thousands of levels, too deep for recursion.
        pending: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while pending:
            node, position = pending.pop()
            children = node.children
            if position == count:
                found.extend(node.entries)
                parent_match = children.get("#")
                if parent_match is not None:
                    found.extend(parent_match.entries)
                continue
            if not children:
                continue
            if position or not dollar:
                rest = children.get("#")
                if rest is not None:
                    found.extend(rest.entries)
                single = children.get("+")
                if single is not None:
                    pending.append((single, position + 1))
            level = levels[position]
            if level != "+" and level != "#":
                exact = children.get(level)
                if exact is not None:
                    pending.append((exact, position + 1))
        return found


# Topic templates: a topic name with {placeholders} (relay downlink topics).
TEMPLATE_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def template_problem(template: str, placeholders: tuple[str, ...]) -> str | None:
    """None when ``template`` is a topic name once its placeholders are filled, else why."""
    names = ", ".join(f"{{{p}}}" for p in placeholders)
    for name in TEMPLATE_PLACEHOLDER.findall(template):
        if name not in placeholders:
            return f"unknown placeholder {{{name}}}; use {names}"
    rest = TEMPLATE_PLACEHOLDER.sub("x", template)
    if "{" in rest or "}" in rest:
        return f"braces must enclose a placeholder: {names}"
    return validate_topic_name(rest)
