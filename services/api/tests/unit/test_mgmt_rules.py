"""Pure rules of the management API: device type changes, retention, topic ACLs."""

from __future__ import annotations

import pytest

from sluice_api.devicerules import (
    MAX_ACL_RULES,
    retention_problem,
    type_change_problem,
    validate_topic_acl,
)


@pytest.mark.parametrize(
    ("period", "retention", "ok"),
    [
        ("day", 0, True),
        ("day", 31, True),
        ("day", 32, False),
        ("week", 26, True),
        ("week", 27, False),
        ("month", 36, True),
        ("quarter", 37, False),
        ("month", -1, False),
    ],
)
def test_retention_bounds_follow_the_chunk_period(period: str, retention: int, ok: bool) -> None:
    problem = retention_problem(period, retention)
    assert (problem is None) is ok
    if not ok:
        assert period in str(problem)


def test_type_change_says_every_step_that_is_missing() -> None:
    assert type_change_problem(active=False, data_points=0) is None
    both = type_change_problem(active=True, data_points=12)
    assert both is not None
    assert "deactivate" in both
    assert "12 data points" in both
    only_data = type_change_problem(active=False, data_points=3)
    assert only_data is not None
    assert "deactivate" not in only_data


def test_acl_rules_are_normalised_with_defaults() -> None:
    rules = validate_topic_acl(
        [{"topic": "devices/{device}/#"}, {"action": "deny", "access": "subscribe", "topic": "#"}]
    )
    assert rules == [
        {"action": "allow", "access": "all", "topic": "devices/{device}/#"},
        {"action": "deny", "access": "subscribe", "topic": "#"},
    ]
    assert validate_topic_acl([]) == []


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ("devices/#", "must be a list"),
        ([{"action": "maybe", "topic": "a"}], "topic_acl[0].action"),
        ([{"topic": "a"}, {"access": "read", "topic": "a"}], "topic_acl[1].access"),
        ([{"action": "allow"}], "topic_acl[0].topic is required"),
        ([{"topic": "a/#/b"}], "'#' must be the last level"),
        ([{"topic": "a/b+"}], "'+' must be a whole level"),
        ([{"topic": "x/{devce}/y"}], "the only placeholder is {device}"),
        ([{"topic": "x/{device"}], "unclosed brace"),
        ([{"topic": "a", "qos": 1}], "unknown field(s) qos"),
        (["a/#"], "must be an object"),
        ([{"topic": "a"}] * (MAX_ACL_RULES + 1), f"at most {MAX_ACL_RULES}"),
    ],
)
def test_bad_acl_rules_name_the_rule_and_the_fix(rules: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        validate_topic_acl(rules)
    assert fragment in str(info.value)
