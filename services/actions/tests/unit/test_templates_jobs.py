"""Templates, the retry schedule, job records and the fallback data (pure code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.config import ActionInfo, DeviceInfo
from sluice_actions.dispatch import header_pairs, recipients
from sluice_actions.executor import fallback_items
from sluice_actions.jobs import EMAIL, POST, Job, retry_delay, schedule
from sluice_actions.templates import (
    TemplateContext,
    context_for,
    location_text,
    render,
    render_line,
    render_url,
)
from sluice_actions.triggers import topic_actions

CTX = context_for(
    {
        "variable": "temperature",
        "value": 96.0,
        "unit": "°C",
        "time": "2026-01-05T10:00:00.000Z",
        "location": {"type": "Point", "coordinates": [-9.14, 38.72]},
    },
    device_id="6743a1f0c2d4e5f6a7b8c9d0",
    device_name="boiler room",
    received_at_ms=0,
    action_state="locked",
)


def test_every_placeholder() -> None:
    text = render(
        "$VARIABLE$=$VALUE$$UNIT$ at $TIME$ ($LOCATION$) on $DEVICE$/$DEVICE.NAME$: $ACTION.STATE$",
        CTX,
    )
    assert text == (
        "temperature=96°C at 2026-01-05T10:00:00.000Z (38.72,-9.14) "
        "on 6743a1f0c2d4e5f6a7b8c9d0/boiler room: locked"
    )


def test_unknown_placeholders_and_lone_dollars_stay() -> None:
    assert render("$5 for $NOPE$ and $value$", CTX) == "$5 for $NOPE$ and $value$"


def test_values_are_not_expanded_twice() -> None:
    ctx = TemplateContext(value="$DEVICE$", device="d1")
    assert render("$VALUE$", ctx) == "$DEVICE$"


def test_url_values_are_percent_encoded() -> None:
    ctx = TemplateContext(value="a b&c=/d", device="d1")
    assert render_url("https://h/x/$DEVICE$?v=$VALUE$", ctx) == "https://h/x/d1?v=a%20b%26c%3D%2Fd"


def test_header_values_lose_line_breaks() -> None:
    ctx = TemplateContext(value="x\r\nInjected: yes")
    assert render_line("v=$VALUE$", ctx) == "v=x  Injected: yes"


def test_context_defaults() -> None:
    ctx = context_for(
        None, device_id="d", device_name="n", received_at_ms=1_767_607_200_000, action_state=""
    )
    assert ctx.time == "2026-01-05T10:00:00.000Z"  # received time when the item has none
    assert ctx.value == ctx.unit == ctx.location == ""
    assert location_text({"lat": 1.5, "lng": 2}) == "1.5,2"
    assert location_text("nowhere") == ""


def test_retry_schedule_doubles_up_to_the_cap() -> None:
    assert schedule(10, 1.0, 60.0) == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert retry_delay(1, 0.2, 1.0) == 0.2
    with pytest.raises(ValueError):
        retry_delay(0, 1, 1)


@given(st.integers(1, 10_000), st.floats(0.01, 10), st.floats(0.01, 600))
def test_retry_delay_is_bounded_and_never_shrinks(attempt: int, base: float, cap: float) -> None:
    delay = retry_delay(attempt, base, cap)
    assert 0 < delay <= cap
    assert retry_delay(attempt + 1, base, cap) >= delay


def test_job_record_round_trip_and_next_attempt() -> None:
    job = Job(
        id="j1",
        kind=POST,
        attempt=1,
        due_ms=1000,
        action="a1",
        action_name="hook",
        account="acc",
        device="d1",
        source="m1",
        request={"url": "http://x", "headers": {}, "body": [{"variable": "t", "value": 1}]},
    )
    assert Job.from_value(job.value()) == job
    follow = job.next_attempt(5000)
    assert (follow.id, follow.attempt, follow.due_ms) == ("j1", 2, 5000)
    headers = dict(job.headers("actions:n1"))
    assert headers["message_id"] == b"j1"
    assert headers["attempt"] == b"1"
    assert job.key() == b"d1"


@pytest.mark.parametrize(
    "value",
    [b"", b"[]", b'{"job": "j"}', b'{"job":"j","kind":"fax","attempt":1,"due":0,'
     b'"action":"a","account":"b","device":"c","request":{}}'],
)  # fmt: skip
def test_unreadable_job_records_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError):
        Job.from_value(value)


def test_fallback_items_carry_the_failure() -> None:
    body = [{"variable": "t", "value": 1, "metadata": {"room": "lab"}}, "junk", {"variable": "h"}]
    items = fallback_items(body, error="HTTP 500", url="http://x", attempts=10)
    assert items == [
        {
            "variable": "t",
            "value": 1,
            "metadata": {
                "room": "lab",
                "_http_error": "HTTP 500",
                "_http_url": "http://x",
                "_http_attempts": 10,
            },
        },
        {
            "variable": "h",
            "metadata": {"_http_error": "HTTP 500", "_http_url": "http://x", "_http_attempts": 10},
        },
    ]
    assert body[0]["metadata"] == {"room": "lab"}  # the job's own copy is left alone


def test_header_and_recipient_shapes() -> None:
    assert header_pairs({"X-A": "1"}) == [("X-A", "1")]
    assert header_pairs([{"key": "X-A", "value": "1"}, {"value": "no key"}]) == [("X-A", "1")]
    assert header_pairs(None) == []
    assert recipients("a@x.io; b@x.io,c@x.io") == ["a@x.io", "b@x.io", "c@x.io"]
    assert recipients(["a@x.io", " "]) == ["a@x.io"]
    assert EMAIL != POST


def test_a_message_fires_a_topic_action_once_whatever_matches() -> None:
    device = DeviceInfo(
        id="d1",
        account_id="a",
        name="n",
        type="mutable",
        active=True,
        tags=(("kind", "meter"),),
        params=(),
        payload_parser=None,
        chunk_period=None,
        chunk_retention=None,
    )
    action = ActionInfo(
        id="x",
        account_id="a",
        name="n",
        type="mqtt_topic",
        trigger=(
            {"device": "d1", "topic": "sensors/#"},
            {"tag_key": "kind", "tag_value": "meter", "topic": "sensors/+"},
            {"tag_key": "kind", "topic": "#"},
        ),
        action={"type": "insert"},
        locked=False,
    )
    other = ActionInfo(
        id="y",
        account_id="a",
        name="n",
        type="mqtt_topic",
        trigger=({"tag_key": "kind", "tag_value": "valve", "topic": "#"},),
        action={"type": "insert"},
        locked=False,
    )
    assert topic_actions([action, other], device, "sensors/a") == [action]
