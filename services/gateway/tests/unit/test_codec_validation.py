"""Bytes that break the MQTT specifications, and the reason code the decoder answers with."""

from __future__ import annotations

import pytest

from sluice_gateway.codec import (
    MALFORMED_PACKET,
    PROTOCOL_ERROR,
    TOPIC_ALIAS_INVALID,
    TOPIC_NAME_INVALID,
    UNSUPPORTED_PROTOCOL_VERSION,
    Connect,
    Properties,
    ProtocolError,
    Publish,
    StreamDecoder,
    Subscribe,
    Subscription,
    UnsupportedProtocolVersion,
)

V311, V5 = 4, 5
MALFORMED, PROTOCOL, BAD_TOPIC = MALFORMED_PACKET, PROTOCOL_ERROR, TOPIC_NAME_INVALID


def wire(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


def frame(first: int, body: bytes) -> bytes:
    """A packet with its remaining length (bodies here stay under 128 bytes)."""
    assert len(body) < 128
    return bytes((first, len(body))) + body


def string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return len(raw).to_bytes(2, "big") + raw


def connect(
    flags: int = 0x02,
    level: int = V311,
    name: str | bytes = "MQTT",
    payload: bytes = string("c"),
    properties: bytes = b"",
) -> bytes:
    return frame(0x10, string(name) + bytes((level, flags)) + b"\x00\x3c" + properties + payload)


def publish_v5(properties: bytes, topic: str = "a") -> bytes:
    return frame(0x30, string(topic) + bytes((len(properties),)) + properties)


def subscribe_v5(properties: bytes, options: int = 0x01, topic_filter: str = "a") -> bytes:
    return frame(
        0x82,
        b"\x00\x01"
        + bytes((len(properties),))
        + properties
        + string(topic_filter)
        + bytes((options,)),
    )


def connect_v5(properties: bytes) -> bytes:
    return connect(level=V5, properties=bytes((len(properties),)) + properties)


def connack_v5(properties: bytes) -> bytes:
    return frame(0x20, b"\x00\x00" + bytes((len(properties),)) + properties)


INVALID: list[tuple[str, int | None, bytes, int]] = [
    # Fixed header
    ("reserved packet type 0", V311, wire("00 00"), MALFORMED),
    ("pubrel without its 0010 flags", V311, wire("60 02 00 01"), MALFORMED),
    ("subscribe without its 0010 flags", V311, wire("80 06 00 01 00 01 61 00"), MALFORMED),
    ("unsubscribe without its 0010 flags", V311, wire("a0 05 00 01 00 01 61"), MALFORMED),
    ("puback with flags", V311, wire("42 02 00 01"), MALFORMED),
    ("pingreq with flags", V311, wire("c1 00"), MALFORMED),
    ("connect with flags", None, wire("11 00"), MALFORMED),
    ("remaining length of five bytes", V311, wire("30 ff ff ff ff 7f"), MALFORMED),
    ("remaining length not minimally encoded", V311, wire("c0 80 00"), MALFORMED),
    # PUBLISH
    ("publish qos 3", V311, wire("36 05 00 01 61 00 01"), MALFORMED),
    ("publish dup with qos 0 (3.1.1)", V311, wire("38 03 00 01 61"), MALFORMED),
    ("publish dup with qos 0 (5.0)", V5, wire("38 04 00 01 61 00"), PROTOCOL),
    ("publish topic longer than the packet", V311, wire("30 03 00 05 61"), MALFORMED),
    ("publish length byte of topic cut", V311, wire("30 01 00"), MALFORMED),
    ("publish packet id cut", V311, wire("32 04 00 01 61 00"), MALFORMED),
    ("publish packet id 0", V311, wire("32 05 00 01 61 00 00"), PROTOCOL),
    ("publish topic not utf-8", V311, wire("30 04 00 02 c3 28"), MALFORMED),
    ("publish topic overlong utf-8", V311, wire("30 04 00 02 c0 af"), MALFORMED),
    ("publish topic with a surrogate", V311, wire("30 05 00 03 ed a0 80"), MALFORMED),
    ("publish topic with U+0000", V311, wire("30 04 00 02 61 00"), MALFORMED),
    ("publish topic with +", V311, wire("30 05 00 03 61 2f 2b"), BAD_TOPIC),
    ("publish topic with # (5.0)", V5, wire("30 06 00 03 61 2f 23 00"), BAD_TOPIC),
    ("publish empty topic (3.1.1)", V311, wire("30 02 00 00"), BAD_TOPIC),
    ("publish empty topic without alias (5.0)", V5, wire("30 03 00 00 00"), PROTOCOL),
    ("publish without property length (5.0)", V5, wire("30 03 00 01 61"), MALFORMED),
    # Acknowledgements
    ("puback packet id 0", V311, wire("40 02 00 00"), PROTOCOL),
    ("puback 5.0 with packet id 0 and a reason", V5, wire("40 03 00 00 10"), PROTOCOL),
    ("puback packet id cut", V311, wire("40 01 00"), MALFORMED),
    ("puback with a trailing byte (3.1.1)", V311, wire("40 03 00 01 00"), MALFORMED),
    ("puback 5.0 reason not for puback", V5, wire("40 03 00 01 92"), PROTOCOL),
    ("pubrel 5.0 reason not for pubrel", V5, wire("62 03 00 01 10"), PROTOCOL),
    ("puback 5.0 properties past the end", V5, wire("40 05 00 01 00 05 1f"), MALFORMED),
    ("puback 5.0 trailing byte", V5, wire("40 05 00 01 00 00 00"), MALFORMED),
    # SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
    ("subscribe without filters", V311, wire("82 02 00 01"), PROTOCOL),
    ("subscribe 5.0 without filters", V5, wire("82 03 00 01 00"), PROTOCOL),
    ("subscribe packet id 0", V311, wire("82 06 00 00 00 01 61 00"), PROTOCOL),
    ("subscribe options cut", V311, wire("82 05 00 01 00 01 61"), MALFORMED),
    ("subscribe qos 3", V311, wire("82 06 00 01 00 01 61 03"), MALFORMED),
    ("subscribe 3.1.1 option bits of 5.0", V311, wire("82 06 00 01 00 01 61 04"), MALFORMED),
    ("subscribe filter with U+0000", V311, wire("82 06 00 01 00 01 00 00"), MALFORMED),
    ("subscribe 5.0 reserved option bits", V5, subscribe_v5(b"", options=0x41), MALFORMED),
    ("subscribe 5.0 retain handling 3", V5, subscribe_v5(b"", options=0x31), PROTOCOL),
    (
        "subscribe 5.0 no local on a shared subscription",
        V5,
        subscribe_v5(b"", options=0x05, topic_filter="$share/g/a"),
        PROTOCOL,
    ),
    ("suback without codes", V311, wire("90 02 00 01"), PROTOCOL),
    ("suback 3.1.1 code 3", V311, wire("90 03 00 01 03"), PROTOCOL),
    ("suback 5.0 code not for suback", V5, wire("90 04 00 01 00 11"), PROTOCOL),
    ("unsubscribe without filters", V311, wire("a2 02 00 01"), PROTOCOL),
    ("unsubscribe filter cut", V311, wire("a2 05 00 01 00 05 61"), MALFORMED),
    ("unsuback 3.1.1 with a code", V311, wire("b0 03 00 01 00"), MALFORMED),
    ("unsuback 5.0 without codes", V5, wire("b0 03 00 01 00"), PROTOCOL),
    ("unsuback 5.0 code not for unsuback", V5, wire("b0 04 00 01 00 10"), PROTOCOL),
    # PINGREQ, PINGRESP, DISCONNECT, AUTH
    ("pingreq with a body", V311, wire("c0 01 00"), MALFORMED),
    ("pingresp with a body", V5, wire("d0 01 00"), MALFORMED),
    ("disconnect 3.1.1 with a body", V311, wire("e0 01 00"), MALFORMED),
    ("disconnect 5.0 reason not for disconnect", V5, wire("e0 01 01"), PROTOCOL),
    ("auth before 5.0", V311, wire("f0 00"), MALFORMED),
    ("auth 5.0 reason without property length", V5, wire("f0 01 18"), MALFORMED),
    ("auth 5.0 reason not for auth", V5, wire("f0 02 10 00"), PROTOCOL),
    # CONNACK
    ("connack reserved flag bits", V311, wire("20 02 02 00"), MALFORMED),
    ("connack session present on refusal", V311, wire("20 02 01 05"), PROTOCOL),
    ("connack 3.1.1 return code 6", V311, wire("20 02 00 06"), PROTOCOL),
    ("connack 5.0 without property length", V5, wire("20 02 00 00"), MALFORMED),
    ("connack 5.0 reason not for connack", V5, wire("20 03 00 04 00"), PROTOCOL),
    # CONNECT
    ("connect reserved flag", None, connect(flags=0x03), MALFORMED),
    ("connect will qos without will", None, connect(flags=0x0A), MALFORMED),
    ("connect will retain without will", None, connect(flags=0x22), MALFORMED),
    (
        "connect will qos 3",
        None,
        connect(flags=0x1E, payload=string("c") + string("w") + string("x")),
        MALFORMED,
    ),
    (
        "connect 3.1.1 password without user name",
        None,
        connect(flags=0x42, payload=string("c") + string("pw")),
        MALFORMED,
    ),
    ("connect protocol name not MQTT", None, connect(name="MQTX"), PROTOCOL),
    ("connect protocol name not utf-8", None, connect(name=b"\xff\xfe"), MALFORMED),
    ("connect client id cut", None, connect(payload=b"\x00\x05c"), MALFORMED),
    ("connect trailing byte", None, connect(payload=string("c") + b"\x00"), MALFORMED),
    ("connect flags cut", None, frame(0x10, string("MQTT") + b"\x04"), MALFORMED),
    (
        "connect will topic with a wildcard",
        None,
        connect(flags=0x06, payload=string("c") + string("w/#") + string("x")),
        BAD_TOPIC,
    ),
    (
        "connect empty will topic",
        None,
        connect(flags=0x06, payload=string("c") + string("") + string("x")),
        BAD_TOPIC,
    ),
    (
        "connect user name flag without user name",
        None,
        connect(flags=0x82),
        MALFORMED,
    ),
    # MQTT 5 properties
    ("property identifier unknown", V5, publish_v5(wire("04 00")), MALFORMED),
    ("property identifier of two bytes", V5, publish_v5(wire("81 01 00")), MALFORMED),
    ("property not allowed in publish", V5, publish_v5(wire("11 00 00 00 01")), MALFORMED),
    ("will delay in connect properties", V5, connect_v5(wire("18 00 00 00 01")), MALFORMED),
    ("property repeated", V5, publish_v5(wire("03 00 01 61 03 00 01 62")), PROTOCOL),
    (
        "subscription identifier repeated in subscribe",
        V5,
        subscribe_v5(wire("0b 01 0b 02")),
        PROTOCOL,
    ),
    ("subscription identifier 0", V5, subscribe_v5(wire("0b 00")), PROTOCOL),
    ("subscription identifier not minimal", V5, subscribe_v5(wire("0b 81 00")), MALFORMED),
    ("payload format indicator 2", V5, publish_v5(wire("01 02")), PROTOCOL),
    ("topic alias 0", V5, publish_v5(wire("23 00 00")), TOPIC_ALIAS_INVALID),
    ("response topic with a wildcard", V5, publish_v5(wire("08 00 01 23")), PROTOCOL),
    ("property value cut", V5, publish_v5(wire("02 00 00")), MALFORMED),
    ("property string not utf-8", V5, publish_v5(wire("03 00 01 ff")), MALFORMED),
    ("user property value missing", V5, publish_v5(wire("26 00 01 6b")), MALFORMED),
    ("receive maximum 0", V5, connect_v5(wire("21 00 00")), PROTOCOL),
    ("maximum packet size 0", V5, connect_v5(wire("27 00 00 00 00")), PROTOCOL),
    ("request problem information 2", V5, connect_v5(wire("17 02")), PROTOCOL),
    ("authentication data without method", V5, connect_v5(wire("16 00 01 00")), PROTOCOL),
    ("maximum qos 2", V5, connack_v5(wire("24 02")), PROTOCOL),
    ("retain available 2", V5, connack_v5(wire("25 02")), PROTOCOL),
    ("property length past the packet", V5, wire("30 05 00 01 61 09 01"), MALFORMED),
    ("before connect", None, wire("c0 00"), PROTOCOL),
    ("publish before connect", None, wire("30 03 00 01 61"), PROTOCOL),
]


@pytest.mark.parametrize(
    ("level", "data", "reason_code"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_bytes_raise_a_protocol_error_with_its_reason_code(
    level: int | None, data: bytes, reason_code: int
) -> None:
    with pytest.raises(ProtocolError) as raised:
        StreamDecoder(protocol_level=level).feed(data)

    assert raised.value.reason_code == reason_code
    assert raised.value.message
    assert not isinstance(raised.value, UnsupportedProtocolVersion)


@pytest.mark.parametrize(
    ("name", "level"),
    [("MQTT", 3), ("MQTT", 6), ("MQTT", 0x84), ("MQIsdp", 4), ("MQIsdp", 5), ("MQTT", 0)],
)
def test_unsupported_level_is_reported_with_the_level_for_the_connack(
    name: str, level: int
) -> None:
    with pytest.raises(UnsupportedProtocolVersion) as raised:
        StreamDecoder().feed(connect(level=level, name=name))

    assert raised.value.reason_code == UNSUPPORTED_PROTOCOL_VERSION
    assert raised.value.protocol_level == level
    assert raised.value.protocol_name == name


VALID_EDGES: list[tuple[str, int | None, bytes, object]] = [
    (
        "subscription identifier repeated in publish",
        V5,
        publish_v5(wire("0b 01 0b 02")),
        Publish("a", b"", properties=Properties(subscription_identifiers=[1, 2])),
    ),
    (
        "user property repeated, order kept",
        V5,
        publish_v5(wire("26 00 01 6b 00 01 31 26 00 01 6b 00 01 32")),
        Publish("a", b"", properties=Properties(user_properties=[("k", "1"), ("k", "2")])),
    ),
    (
        "password without user name in 5.0",
        None,
        connect(flags=0x42, level=V5, properties=b"\x00", payload=string("c") + string("pw")),
        Connect(V5, "c", password=b"pw"),
    ),
    (
        "byte order mark kept in topic",
        V311,
        wire("30 05 00 03 ef bb bf"),
        Publish("\ufeff", b""),
    ),
    (
        "control characters are allowed",
        V311,
        wire("30 03 00 01 01"),
        Publish("\x01", b""),
    ),
    (
        "wildcards are fine in subscribe filters (the session validates them)",
        V311,
        wire("82 08 00 01 00 03 2b 2f 23 00"),
        Subscribe(1, [Subscription("+/#", 0)]),
    ),
]


@pytest.mark.parametrize(
    ("level", "data", "expected"),
    [case[1:] for case in VALID_EDGES],
    ids=[c[0] for c in VALID_EDGES],
)
def test_edges_the_specification_allows_decode(
    level: int | None, data: bytes, expected: object
) -> None:
    assert StreamDecoder(protocol_level=level).feed(data) == [expected]
