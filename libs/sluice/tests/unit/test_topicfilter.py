import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.topicfilter import (
    TopicTree,
    match_topic,
    parse_shared,
    validate_topic_filter,
    validate_topic_name,
)

# (filter, topic, matches): the examples of MQTT 5.0 §4.7 and the edges around them.
MATCHES = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("sport/#", "sports", False),
    ("a/#", "a", True),
    ("a/#", "a/b", True),
    ("a/#", "a/b/c", True),
    ("a/#", "a/", True),
    ("a/#", "b", False),
    ("a/b/#", "a", False),
    ("#", "a", True),
    ("#", "a/b/c", True),
    ("#", "/", True),
    ("#", "/a", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/tennis/+", "sport/tennis", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "a/b", True),
    ("+/+", "a", False),
    ("+/+", "a/b/c", False),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+/a", "/a", True),
    ("/a", "/a", True),
    ("/a", "a", False),
    ("a//b", "a//b", True),
    ("a/+/b", "a//b", True),
    ("a/b", "a//b", False),
    ("+", "a", True),
    ("+", "$SYS", False),
    ("#", "$SYS", False),
    ("#", "$SYS/x", False),
    ("+/x", "$SYS/x", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/x", "$SYS/x", True),
    ("a/+", "a/$x", True),
    ("a/#", "a/$x/y", True),
    ("Sport", "sport", False),
    ("a/b", "a/b", True),
    ("a/b", "a/b/", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_match_topic(topic_filter: str, topic: str, expected: bool) -> None:
    assert match_topic(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCHES)
def test_tree_matches_like_match_topic(topic_filter: str, topic: str, expected: bool) -> None:
    tree: TopicTree[int] = TopicTree()
    tree.add(topic_filter, 1)
    assert tree.match(topic) == ([(topic_filter, 1)] if expected else [])


@pytest.mark.parametrize("topic", ["a", "a/b", "/", "/a/", "a//b", "$SYS/x", "é/ü", "x" * 65535])
def test_valid_topic_names(topic: str) -> None:
    assert validate_topic_name(topic) is None


@pytest.mark.parametrize(
    ("topic", "complaint"),
    [
        ("", "empty"),
        ("a/+", "wildcards"),
        ("a/#", "wildcards"),
        ("a+b", "wildcards"),
        ("a\x00b", "U+0000"),
        ("x" * 65536, "65535 bytes"),
        ("é" * 32768, "65535 bytes"),
    ],
)
def test_invalid_topic_names(topic: str, complaint: str) -> None:
    problem = validate_topic_name(topic)
    assert problem is not None
    assert complaint in problem


@pytest.mark.parametrize(
    "topic_filter",
    ["a", "#", "+", "a/#", "a/+/b", "+/+", "/+", "+/#", "/", "a//b", "$SYS/#", "$share/g/a"],
)
def test_valid_topic_filters(topic_filter: str) -> None:
    assert validate_topic_filter(topic_filter) is None


@pytest.mark.parametrize(
    ("topic_filter", "complaint"),
    [
        ("", "empty"),
        ("a#", "whole level"),
        ("a/b#", "whole level"),
        ("#/a", "last level"),
        ("a/#/b", "last level"),
        ("a+", "whole level"),
        ("a/+b/c", "whole level"),
        ("a/\x00", "U+0000"),
        ("a/" + "b" * 65534, "65535 bytes"),
    ],
)
def test_invalid_topic_filters(topic_filter: str, complaint: str) -> None:
    problem = validate_topic_filter(topic_filter)
    assert problem is not None
    assert complaint in problem


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("$share/workers/sensors/#", ("workers", "sensors/#")),
        ("$share/g/a", ("g", "a")),
        ("$share/g//a", ("g", "/a")),
        ("sensors/#", (None, "sensors/#")),
        ("$SYS/share", (None, "$SYS/share")),
        ("$shared/g/a", (None, "$shared/g/a")),
    ],
)
def test_parse_shared(topic_filter: str, expected: tuple[str | None, str]) -> None:
    assert parse_shared(topic_filter) == expected


@pytest.mark.parametrize(
    ("topic_filter", "complaint"),
    [
        ("$share", "$share/{group}/{filter}"),
        ("$share/", "group name"),
        ("$share//a", "group name"),
        ("$share/g", "topic filter after the group"),
        ("$share/g/", "topic filter after the group"),
        ("$share/g+/a", "must not contain"),
        ("$share/#/a", "must not contain"),
    ],
)
def test_parse_shared_rejects_malformed(topic_filter: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint.replace("$", r"\$").replace("{", r"\{")):
        parse_shared(topic_filter)


def test_tree_add_remove_and_len() -> None:
    tree: TopicTree[str] = TopicTree()
    tree.add("a/+", "s1")
    tree.add("a/+", "s2")
    tree.add("a/#", "s1")
    assert len(tree) == 3
    assert sorted(tree.match("a/b")) == [("a/#", "s1"), ("a/+", "s1"), ("a/+", "s2")]
    assert tree.remove("a/+", "s1") is True
    assert tree.remove("a/+", "s1") is False
    assert tree.remove("a/b/c", "s1") is False
    assert tree.remove("a/#", "s2") is False
    assert len(tree) == 2
    assert sorted(tree.match("a/b")) == [("a/#", "s1"), ("a/+", "s2")]
    assert tree.remove("a/+", "s2") is True
    assert tree.remove("a/#", "s1") is True
    assert len(tree) == 0
    assert tree.match("a/b") == []


def test_tree_removes_by_identity_for_unequal_objects() -> None:
    class Sub:
        pass

    first, second = Sub(), Sub()
    tree: TopicTree[Sub] = TopicTree()
    tree.add("x", first)
    tree.add("x", second)
    assert tree.remove("x", second)
    assert tree.match("x") == [("x", first)]


def test_tree_keeps_duplicates_until_each_is_removed() -> None:
    tree: TopicTree[int] = TopicTree()
    tree.add("t", 7)
    tree.add("t", 7)
    assert tree.match("t") == [("t", 7), ("t", 7)]
    tree.remove("t", 7)
    assert tree.match("t") == [("t", 7)]


def test_tree_prunes_empty_branches_and_can_reuse_them() -> None:
    tree: TopicTree[int] = TopicTree()
    tree.add("a/b/c/d", 1)
    tree.add("a/b", 2)
    tree.remove("a/b/c/d", 1)
    assert tree.match("a/b") == [("a/b", 2)]
    tree.add("a/b/c/d", 3)
    assert tree.match("a/b/c/d") == [("a/b/c/d", 3)]


def test_tree_handles_very_deep_topics() -> None:
    tree: TopicTree[int] = TopicTree()
    deep = "/".join(["a"] * 20_000)
    tree.add("#", 1)
    tree.add(deep, 2)
    tree.add("+/" * 19_999 + "+", 3)
    assert sorted(tree.match(deep)) == [("#", 1), ("+/" * 19_999 + "+", 3), (deep, 2)]


def test_tree_only_visits_matching_branches() -> None:
    tree: TopicTree[int] = TopicTree()
    for device in range(5_000):
        tree.add(f"devices/{device}/data", device)
        tree.add(f"devices/{device}/cmd/#", device)
    tree.add("devices/+/data", -1)
    assert sorted(tree.match("devices/42/data")) == [
        ("devices/+/data", -1),
        ("devices/42/data", 42),
    ]
    assert tree.match("devices/42/cmd") == [("devices/42/cmd/#", 42)]
    assert len(tree) == 10_001


# -- properties ------------------------------------------------------------------------

LEVELS = ["a", "b", "", "$s"]
# A single empty level would be the empty topic, which is not a topic.
topic_levels = st.lists(st.sampled_from(LEVELS), min_size=1, max_size=5).filter(lambda t: t != [""])


@st.composite
def filter_levels(draw: st.DrawFn) -> list[str]:
    levels = draw(st.lists(st.sampled_from([*LEVELS, "+"]), max_size=5))
    if levels in ([], [""]) or draw(st.booleans()):
        levels.append("#")
    return levels


def reference_match(wanted: list[str], levels: list[str]) -> bool:
    """MQTT matching, written as its plain recursive definition."""
    if wanted[0] in ("+", "#") and levels[0].startswith("$"):
        return False

    def walk(f: list[str], t: list[str]) -> bool:
        if not f:
            return not t
        if f[0] == "#":
            return True
        if not t:
            return False
        return (f[0] == "+" or f[0] == t[0]) and walk(f[1:], t[1:])

    return walk(wanted, levels)


@given(filter_levels(), topic_levels)
def test_match_topic_agrees_with_the_definition(wanted: list[str], levels: list[str]) -> None:
    assert match_topic("/".join(wanted), "/".join(levels)) is reference_match(wanted, levels)


@given(filter_levels())
def test_generated_filters_are_valid(wanted: list[str]) -> None:
    assert validate_topic_filter("/".join(wanted)) is None


@given(
    st.lists(filter_levels(), min_size=1, max_size=25),
    st.lists(topic_levels, min_size=1, max_size=10),
    st.data(),
)
def test_tree_agrees_with_match_topic(
    filters: list[list[str]], topics: list[list[str]], data: st.DataObject
) -> None:
    tree: TopicTree[int] = TopicTree()
    entries = [("/".join(levels), index) for index, levels in enumerate(filters)]
    for topic_filter, value in entries:
        tree.add(topic_filter, value)
    removed = data.draw(st.sets(st.sampled_from(range(len(entries)))))
    for index in removed:
        assert tree.remove(*entries[index])
    kept = [entry for index, entry in enumerate(entries) if index not in removed]
    assert len(tree) == len(kept)
    for levels in topics:
        topic = "/".join(levels)
        expected = sorted(entry for entry in kept if match_topic(entry[0], topic))
        assert sorted(tree.match(topic)) == expected
