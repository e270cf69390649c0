"""The relay's pure rules: message → device, platform publish → external topic, ownership,
reconnect delays and echo suppression."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice_gateway.relay.connect import describe_disconnect, describe_refusal
from sluice_gateway.relay.mapping import (
    Backoff,
    EchoFilter,
    Located,
    Unmapped,
    downlink_topic,
    locate,
    partition_for,
    serial_from_json,
    serial_from_topic,
    template_problem,
)
from sluice_gateway.relay.model import DeviceMapping


@pytest.mark.parametrize(
    ("topic", "segment", "serial"),
    [
        ("devices/SN1/up", 1, "SN1"),
        ("devices/SN1/up", 0, "devices"),
        ("devices/SN1/up", -1, "up"),
        ("devices/SN1/up", -3, "devices"),
        ("devices/SN1/up", 3, None),
        ("devices/SN1/up", -4, None),
        ("devices//up", 1, None),  # an empty level names nothing
        ("SN9", 0, "SN9"),
    ],
)
def test_serial_from_topic_level(topic: str, segment: int, serial: str | None) -> None:
    assert serial_from_topic(topic, segment) == serial


@pytest.mark.parametrize(
    ("payload", "path", "serial"),
    [
        (b'{"serial": "SN1", "t": 21}', "serial", "SN1"),
        (b'{"meta": {"serial": "SN2"}}', "meta.serial", "SN2"),
        (b'{"serial": 1234}', "serial", "1234"),
        (b'{"serial": 1234.0}', "serial", "1234"),
        (b'[{"variable": "sn", "value": "SN3"}]', "0.value", "SN3"),
        (b'{"serial": "  "}', "serial", None),
        (b'{"serial": true}', "serial", None),
        (b'{"serial": 12.5}', "serial", None),
        (b'{"serial": {"a": 1}}', "serial", None),
        (b'{"other": "SN1"}', "serial", None),
        (b"[1, 2]", "5", None),
        (b"not json", "serial", None),
        (b"", "serial", None),
    ],
)
def test_serial_from_json_field(payload: bytes, path: str, serial: str | None) -> None:
    assert serial_from_json(payload, path) == serial


def test_locate_by_each_mapping_type() -> None:
    fixed = DeviceMapping(type="device", device="d1")
    assert locate(fixed, "any/topic", b"x") == Located(device="d1")
    by_topic = DeviceMapping(type="topic", segment=1)
    assert locate(by_topic, "devices/SN1/up", b"x") == Located(serial="SN1")
    by_json = DeviceMapping(type="json", field="sn")
    assert locate(by_json, "t", b'{"sn": "SN2"}') == Located(serial="SN2")


def test_locate_says_why_a_message_has_no_device() -> None:
    with pytest.raises(Unmapped, match="has no level 4"):
        locate(DeviceMapping(type="topic", segment=4), "devices/SN1/up", b"")
    with pytest.raises(Unmapped, match="not JSON with a string or number at 'sn'"):
        locate(DeviceMapping(type="json", field="sn"), "t", b"21.5")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{topic}", None),
        ("devices/{serial}/{topic}", None),
        ("cmd/{device}", None),
        ("{serial", "braces must enclose a placeholder"),
        ("x/{name}", "unknown placeholder {name}"),
        ("x/#", "wildcards"),
        ("", "must not be empty"),
    ],
)
def test_downlink_template_checks(template: str, problem: str | None) -> None:
    found = template_problem(template)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_downlink_topic_fills_placeholders() -> None:
    assert (
        downlink_topic("devices/{serial}/{topic}", topic="cmd/led", device="d1", serial="SN1")
        == "devices/SN1/cmd/led"
    )
    assert downlink_topic("{topic}", topic="cmd", device="d1", serial=None) == "cmd"
    assert downlink_topic("to/{device}", topic="cmd", device="d1", serial=None) == "to/d1"


def test_downlink_topic_refuses_what_it_cannot_fill() -> None:
    with pytest.raises(Unmapped, match="needs \\{serial\\} but device d1 has none"):
        downlink_topic("devices/{serial}", topic="t", device="d1", serial=None)
    with pytest.raises(Unmapped, match="wildcards"):
        downlink_topic("{serial}/x", topic="t", device="d1", serial="a+b")


@given(st.text(min_size=1, max_size=30), st.integers(min_value=1, max_value=64))
def test_every_relay_has_exactly_one_owner_partition(relay_id: str, partitions: int) -> None:
    owner = partition_for(relay_id, partitions)
    assert 0 <= owner < partitions
    assert partition_for(relay_id, partitions) == owner  # stable across nodes and restarts


def test_partition_is_the_same_on_every_node() -> None:
    # crc32, not Python's per-process salted hash: every gateway computes the same owner.
    assert partition_for("6743a1f0c2d4e5f6a7b8c9e3", 8) == partition_for(
        "6743a1f0c2d4e5f6a7b8c9e3", 8
    )
    assert {partition_for(f"relay-{n}", 8) for n in range(200)} == set(range(8))


def test_backoff_grows_to_its_cap_and_starts_over_after_a_stable_connection() -> None:
    backoff = Backoff(first=0.5, maximum=8.0, jitter=0.0, stable_after=10.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.connection_ended(lasted=2.0)  # flapping (e.g. kicked at once): keep waiting long
    assert backoff.next() == 8.0
    backoff.connection_ended(lasted=60.0)
    assert backoff.next() == 0.5


def test_backoff_jitter_stays_within_its_band() -> None:
    low = Backoff(first=1.0, jitter=0.2, rng=lambda: 0.0)
    high = Backoff(first=1.0, jitter=0.2, rng=lambda: 1.0)
    assert low.next() == pytest.approx(0.8)
    assert high.next() == pytest.approx(1.2)


def test_echo_filter_drops_each_own_publish_once() -> None:
    now = [0.0]
    echo = EchoFilter(ttl=30.0, clock=lambda: now[0])
    echo.sent("cmd/1", b"on")
    echo.sent("cmd/1", b"on")
    assert echo.is_echo("cmd/1", b"on")
    assert echo.is_echo("cmd/1", b"on")
    assert not echo.is_echo("cmd/1", b"on")  # a third copy is a device's own message
    assert not echo.is_echo("cmd/1", b"off")
    echo.sent("cmd/2", b"x")
    now[0] = 31.0
    assert not echo.is_echo("cmd/2", b"x")  # too old to be our echo


def test_echo_filter_is_bounded() -> None:
    echo = EchoFilter(max_entries=3)
    for n in range(10):
        echo.sent(f"t/{n}", b"p")
    assert not echo.is_echo("t/0", b"p")
    assert echo.is_echo("t/9", b"p")


def test_refusals_and_disconnects_read_as_advice() -> None:
    from gmqtt.mqtt.handler import MQTTConnectError

    assert "check the relay's username and password" in describe_refusal(MQTTConnectError(5))
    assert "check the relay's username and password" in describe_refusal(MQTTConnectError(134))
    assert "set another one" in describe_refusal(MQTTConnectError(2))
    assert "session taken over" in describe_disconnect(b"\x8e\x00")
    assert describe_disconnect(b"") == "connection to the broker lost"
