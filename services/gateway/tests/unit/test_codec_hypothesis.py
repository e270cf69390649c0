"""Property tests: generated packets of every type and version, random chunking, fuzzed bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice_gateway.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketTooLarge,
    Pingreq,
    Pingresp,
    Properties,
    ProtocolError,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    StreamDecoder,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
)

LEVELS = (3, 4, 5)
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Reason codes per packet type, from the MQTT 5.0 specification.
CONNACK_V5 = [0x00, *range(0x80, 0x8B), 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F]
PUBACK_V5 = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
PUBREL_V5 = [0x00, 0x92]
SUBACK_V5 = [0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2]
UNSUBACK_V5 = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]
DISCONNECT_V5 = [0x00, 0x04, *range(0x80, 0x84), 0x87, 0x89, 0x8B, *range(0x8D, 0x91)]
DISCONNECT_V5 += range(0x93, 0xA3)

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
topic_name = text.filter(lambda t: t and "+" not in t and "#" not in t)
binary = st.binary(max_size=24)
packet_id = st.integers(1, 65535)
u16 = st.integers(0, 65535)
u32 = st.integers(0, 2**32 - 1)
flag = st.integers(0, 1)

# Every property's values; which packet may carry which is listed below, from the spec.
PROPERTY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "payload_format_indicator": flag,
    "message_expiry_interval": u32,
    "content_type": text,
    "response_topic": topic_name,
    "correlation_data": binary,
    "session_expiry_interval": u32,
    "assigned_client_identifier": text,
    "server_keep_alive": u16,
    "authentication_method": text,
    "authentication_data": binary,
    "request_problem_information": flag,
    "will_delay_interval": u32,
    "request_response_information": flag,
    "response_information": text,
    "server_reference": text,
    "reason_string": text,
    "receive_maximum": st.integers(1, 65535),
    "topic_alias_maximum": u16,
    "topic_alias": st.integers(1, 65535),
    "maximum_qos": flag,
    "retain_available": flag,
    "user_properties": st.lists(st.tuples(text, text), min_size=1, max_size=3),
    "maximum_packet_size": st.integers(1, 2**32 - 1),
    "wildcard_subscription_available": flag,
    "subscription_identifier_available": flag,
    "shared_subscription_available": flag,
}
MESSAGE = [
    "payload_format_indicator",
    "message_expiry_interval",
    "content_type",
    "response_topic",
    "correlation_data",
    "user_properties",
]
ALLOWED = {
    "connect": [
        "session_expiry_interval",
        "authentication_method",
        "authentication_data",
        "request_problem_information",
        "request_response_information",
        "receive_maximum",
        "topic_alias_maximum",
        "user_properties",
        "maximum_packet_size",
    ],
    "connack": [
        "session_expiry_interval",
        "assigned_client_identifier",
        "server_keep_alive",
        "authentication_method",
        "authentication_data",
        "response_information",
        "server_reference",
        "reason_string",
        "receive_maximum",
        "topic_alias_maximum",
        "maximum_qos",
        "retain_available",
        "user_properties",
        "maximum_packet_size",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    ],
    "will": [*MESSAGE, "will_delay_interval"],
    "publish": [*MESSAGE, "topic_alias", "subscription_identifiers"],
    "ack": ["reason_string", "user_properties"],
    "subscribe": ["subscription_identifiers", "user_properties"],
    "unsubscribe": ["user_properties"],
    "disconnect": [
        "session_expiry_interval",
        "reason_string",
        "user_properties",
        "server_reference",
    ],
    "auth": ["authentication_method", "authentication_data", "reason_string", "user_properties"],
}


@st.composite
def properties(draw: st.DrawFn, packet: str) -> Properties | None:
    names = draw(st.lists(st.sampled_from(ALLOWED[packet]), unique=True, max_size=4))
    if not names:
        return None
    values: dict[str, Any] = {}
    for name in names:
        if name == "subscription_identifiers":
            most = 3 if packet == "publish" else 1
            ident = st.integers(1, 268_435_455)
            values[name] = draw(st.lists(ident, min_size=1, max_size=most))
        else:
            values[name] = draw(PROPERTY_VALUES[name])
    if packet == "connect" and "authentication_data" in values:
        values.setdefault("authentication_method", draw(text))
    return Properties(**values)


def props_if(level: int, packet: str) -> st.SearchStrategy[Properties | None]:
    return properties(packet) if level == 5 else st.none()


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    username = draw(st.none() | text)
    password = draw(st.none() | binary) if username is not None or level == 5 else None
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(topic_name),
            draw(binary),
            draw(st.integers(0, 2)),
            draw(st.booleans()),
            draw(props_if(level, "will")),
        )
    return Connect(
        level,
        draw(text),
        draw(st.booleans()),
        draw(u16),
        username,
        password,
        will,
        draw(props_if(level, "connect")),
        "MQIsdp" if level == 3 else "MQTT",
    )


@st.composite
def connacks(draw: st.DrawFn, level: int) -> Connack:
    code = draw(st.sampled_from(CONNACK_V5) if level == 5 else st.integers(0, 5))
    session_present = draw(st.booleans()) if code == 0 else False
    return Connack(session_present, code, draw(props_if(level, "connack")))


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    qos = draw(st.integers(0, 2))
    props = draw(props_if(level, "publish"))
    topic = draw(topic_name)
    if props is not None and props.topic_alias is not None and draw(st.booleans()):
        topic = ""  # MQTT 5: the alias stands for the topic
    return Publish(
        topic,
        draw(st.binary(max_size=300)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_id) if qos else None,
        props,
    )


def acks(cls: type, level: int, codes: list[int]) -> st.SearchStrategy[Packet]:
    if level != 5:
        return st.builds(cls, packet_id)
    return st.builds(cls, packet_id, st.sampled_from(codes), properties("ack"))


@st.composite
def subscription(draw: st.DrawFn, level: int) -> Subscription:
    topic_filter = draw(text)
    if level != 5:
        return Subscription(topic_filter, draw(st.integers(0, 2)))
    no_local = draw(st.booleans()) and not topic_filter.startswith("$share/")
    return Subscription(
        topic_filter,
        draw(st.integers(0, 2)),
        no_local,
        draw(st.booleans()),
        draw(st.integers(0, 2)),
    )


def packets(level: int) -> st.SearchStrategy[Packet]:
    v5 = level == 5
    options: list[st.SearchStrategy[Any]] = [
        connects(level),
        connacks(level),
        publishes(level),
        acks(Puback, level, PUBACK_V5),
        acks(Pubrec, level, PUBACK_V5),
        acks(Pubrel, level, PUBREL_V5),
        acks(Pubcomp, level, PUBREL_V5),
        st.builds(
            Subscribe,
            packet_id,
            st.lists(subscription(level), min_size=1, max_size=4),
            props_if(level, "subscribe"),
        ),
        st.builds(
            Suback,
            packet_id,
            st.lists(st.sampled_from(SUBACK_V5 if v5 else [0, 1, 2, 0x80]), min_size=1),
            props_if(level, "ack"),
        ),
        st.builds(
            Unsubscribe,
            packet_id,
            st.lists(text, min_size=1, max_size=4),
            props_if(level, "unsubscribe"),
        ),
        st.builds(
            Unsuback,
            packet_id,
            st.lists(st.sampled_from(UNSUBACK_V5), min_size=1) if v5 else st.just([]),
            props_if(level, "ack"),
        ),
        st.builds(Pingreq),
        st.builds(Pingresp),
        st.builds(Disconnect, st.sampled_from(DISCONNECT_V5), properties("disconnect"))
        if v5
        else st.builds(Disconnect),
    ]
    if v5:
        options.append(st.builds(Auth, st.sampled_from([0, 0x18, 0x19]), properties("auth")))
    return st.one_of(options)


any_level_packets = st.sampled_from(LEVELS).flatmap(
    lambda level: st.tuples(st.just(level), st.lists(packets(level), min_size=1, max_size=6))
)


@QUICK
@given(st.sampled_from(LEVELS).flatmap(lambda level: st.tuples(st.just(level), packets(level))))
def test_decode_of_encode_is_the_packet(case: tuple[int, Packet]) -> None:
    level, packet = case
    assert StreamDecoder(protocol_level=level).feed(encode(packet, level)) == [packet]


@QUICK
@given(any_level_packets, st.data())
def test_any_chunking_gives_the_same_packets(case: tuple[int, list[Packet]], data: Any) -> None:
    level, expected = case
    stream = b"".join(encode(p, level) for p in expected)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = StreamDecoder(protocol_level=level)
    decoded: list[Packet] = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoded += decoder.feed(stream[start:stop])
    assert decoded == expected
    assert decoder.buffered == 0


def check_only_protocol_errors(data: bytes, level: int | None) -> None:
    """Decoding arbitrary bytes yields valid packets or a ProtocolError, nothing else.

    Whatever decodes must also encode and decode again to the same packet.
    """
    decoder = StreamDecoder(protocol_level=level)
    error = None
    try:
        decoded = decoder.feed(data)
    except ProtocolError as raised:
        error = raised
        decoded = raised.packets
    if error is not None:
        assert error.message
        assert 0x80 <= error.reason_code <= 0xA2
    for packet in decoded:
        if isinstance(packet, Connect):
            level = packet.protocol_level
        assert level is not None
        again = StreamDecoder(protocol_level=level).feed(encode(packet, level))
        assert again == [packet]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([None, *LEVELS]))
def test_random_bytes_raise_only_protocol_errors(data: bytes, level: int | None) -> None:
    check_only_protocol_errors(data, level)


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[bytes, int | None]:
    level, expected = draw(any_level_packets)
    stream = bytearray(b"".join(encode(p, level) for p in expected))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
        index = draw(st.integers(0, max(len(stream) - 1, 0)))
        if kind == "flip" and stream:
            stream[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            stream[index:index] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del stream[index : index + draw(st.integers(1, 4))]
        elif kind == "truncate":
            del stream[index:]
        elif stream:
            stream[index] = draw(st.integers(0, 255))
    return bytes(stream), draw(st.sampled_from([level, None]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_streams())
def test_mutated_packets_raise_only_protocol_errors(case: tuple[bytes, int | None]) -> None:
    check_only_protocol_errors(*case)


@QUICK
@given(st.sampled_from(LEVELS), st.integers(2, 300_000), st.data())
def test_packet_too_large_comes_with_the_fixed_header(level: int, size: int, data: Any) -> None:
    payload = bytes(size)
    packet = encode(Publish("t", payload, qos=1, packet_id=1), level)
    header_size = len(packet) - (len(payload) + 3 + 2 + (level == 5))
    limit = data.draw(st.integers(2, len(packet) - 1))
    decoder = StreamDecoder(max_packet_size=limit, protocol_level=level)

    with pytest.raises(PacketTooLarge) as raised:
        decoder.feed(packet[:header_size])
    assert raised.value.size == len(packet)
