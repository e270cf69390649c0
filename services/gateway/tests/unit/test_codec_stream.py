"""StreamDecoder as a connection sees it: chunking, buffering, limits, errors; and the encoders."""

from __future__ import annotations

import pytest

from sluice_gateway.codec import (
    PACKET_TOO_LARGE,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREL,
    Auth,
    Connect,
    Disconnect,
    PacketTooLarge,
    Pingreq,
    Properties,
    ProtocolError,
    Puback,
    Publish,
    Pubrel,
    StreamDecoder,
    Unsubscribe,
    encode,
    encode_ack,
    encode_publish,
)

V311, V5 = 4, 5


def session_bytes(level: int) -> tuple[bytes, list[object]]:
    packets: list[object] = [
        Connect(level, "dev-1", username="Token", password=b"secret"),
        Publish("sensors/temp", b"21.5", qos=1, packet_id=1),
        Publish("sensors/big", bytes(range(256)) * 3, qos=2, packet_id=2, retain=True),
        Pubrel(2),
        Pingreq(),
        Disconnect(),
    ]
    return b"".join(encode(p, level) for p in packets), packets  # type: ignore[arg-type]


@pytest.mark.parametrize("level", [V311, V5])
def test_every_split_point_gives_the_same_packets(level: int) -> None:
    data, expected = session_bytes(level)
    for cut in range(len(data) + 1):
        decoder = StreamDecoder()
        packets = decoder.feed(data[:cut])
        packets += decoder.feed(data[cut:])
        assert packets == expected, f"split at byte {cut}"
        assert decoder.buffered == 0


def test_byte_by_byte_feeding_gives_the_same_packets() -> None:
    data, expected = session_bytes(V5)
    decoder = StreamDecoder()
    packets = []
    for index in range(len(data)):
        packets += decoder.feed(data[index : index + 1])
    assert packets == expected


def test_buffered_counts_the_bytes_of_the_incomplete_packet() -> None:
    packet = encode_publish("a/b", b"x" * 300, 1, False, False, 9, V311)
    decoder = StreamDecoder(protocol_level=V311)

    assert decoder.feed(packet[:1]) == []
    assert decoder.buffered == 1
    assert decoder.feed(packet[1:100]) == []
    assert decoder.buffered == 100
    assert decoder.feed(packet[100:] + packet[:5]) == [Publish("a/b", b"x" * 300, 1, packet_id=9)]
    assert decoder.buffered == 5


def test_a_large_packet_in_small_chunks_is_decoded_once_complete() -> None:
    payload = bytes(range(256)) * 1024
    packet = encode_publish("firmware/image", payload, 0, False, False, None, V311)
    decoder = StreamDecoder(protocol_level=V311)

    decoded = []
    for start in range(0, len(packet), 1000):
        decoded += decoder.feed(packet[start : start + 1000])

    assert decoded == [Publish("firmware/image", payload)]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytearray_and_memoryview_are_accepted_and_copied(kind: type) -> None:
    packet = encode_publish("a", b"hello", 0, False, False, None, V311)
    source = bytearray(packet + packet[:4])
    decoder = StreamDecoder(protocol_level=V311)

    assert decoder.feed(kind(source)) == [Publish("a", b"hello")]
    source[:] = bytes(len(source))  # the caller reuses its receive buffer
    assert decoder.feed(packet[4:]) == [Publish("a", b"hello")]


def test_packet_too_large_is_raised_from_the_fixed_header_alone() -> None:
    decoder = StreamDecoder(max_packet_size=1024, protocol_level=V311)

    with pytest.raises(PacketTooLarge) as raised:
        decoder.feed(b"\x30\x80\x80\x01")  # announces 16384 bytes, none of them sent

    assert raised.value.reason_code == PACKET_TOO_LARGE
    assert raised.value.size == 1 + 3 + 16384
    assert raised.value.limit == 1024


def test_the_limit_counts_the_whole_packet() -> None:
    packet = encode_publish("a", bytes(95), 0, False, False, None, V311)
    assert len(packet) == 100

    assert StreamDecoder(max_packet_size=100, protocol_level=V311).feed(packet)
    with pytest.raises(PacketTooLarge):
        StreamDecoder(max_packet_size=99, protocol_level=V311).feed(packet)


def test_packets_before_an_error_are_kept_on_the_error() -> None:
    good = encode_publish("a", b"1", 0, False, False, None, V311)
    bad = b"\x30\x03\x00\x01+"

    with pytest.raises(ProtocolError) as raised:
        StreamDecoder(protocol_level=V311).feed(good + good + bad + good)

    assert raised.value.packets == [Publish("a", b"1"), Publish("a", b"1")]


def test_a_malformed_connect_still_tells_its_level() -> None:
    decoder = StreamDecoder()
    bad_will_flags = b"\x10\x0c\x00\x04MQTT\x05\x0a\x00\x3c\x00\x00\x00"

    with pytest.raises(ProtocolError):
        decoder.feed(bad_will_flags)

    assert decoder.protocol_level == V5


def test_the_client_side_level_can_be_set_after_construction() -> None:
    decoder = StreamDecoder()
    decoder.protocol_level = V5

    assert decoder.feed(b"\x40\x03\x00\x01\x10") == [Puback(1, 0x10)]


def test_encode_ack_writes_the_short_forms() -> None:
    assert encode_ack(PUBACK, 1, V311) == b"\x40\x02\x00\x01"
    assert encode_ack(PUBACK, 1, V311, 0x10) == b"\x40\x02\x00\x01"  # no reason codes in 3.x
    assert encode_ack(PUBACK, 1, V5) == b"\x40\x02\x00\x01"
    assert encode_ack(PUBACK, 1, V5, 0x97) == b"\x40\x03\x00\x01\x97"
    assert encode_ack(PUBREL, 258, V5) == b"\x62\x02\x01\x02"
    assert encode_ack(PUBCOMP, 65535, V311) == b"\x70\x02\xff\xff"
    with pytest.raises(ValueError, match="not PUBACK"):
        encode_ack(PUBLISH, 1, V311)


def test_encode_publish_takes_the_topic_as_str_or_bytes() -> None:
    as_text = encode_publish("é/t", b"p", 1, True, True, 3, V5, Properties(topic_alias=2))
    as_bytes = encode_publish("é/t".encode(), b"p", 1, True, True, 3, V5, Properties(topic_alias=2))

    assert as_text == as_bytes
    assert StreamDecoder(protocol_level=V5).feed(as_text) == [
        Publish("é/t", b"p", 1, True, True, 3, Properties(topic_alias=2))
    ]


def test_an_empty_properties_object_encodes_like_none() -> None:
    assert encode(Puback(1, 0, Properties()), V5) == b"\x40\x02\x00\x01"
    assert encode(Disconnect(0x04, Properties()), V5) == b"\xe0\x01\x04"
    assert encode(Auth(0, Properties()), V5) == b"\xf0\x00"


def test_encode_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode(Puback(70000), V311)
    with pytest.raises(ValueError, match="not allowed in PUBLISH"):
        encode(Publish("a", b"", properties=Properties(session_expiry_interval=1)), V5)
    with pytest.raises(ValueError, match="out of range"):
        encode(Publish("a", b"", properties=Properties(message_expiry_interval=2**32)), V5)
    with pytest.raises(ValueError, match="out of range"):
        encode(Publish("a" * 70000, b""), V311)
    with pytest.raises(ValueError, match="at most 65535"):
        encode(Unsubscribe(1, ["a" * 70000]), V311)
    with pytest.raises(ValueError, match="AUTH only exists in MQTT 5"):
        encode(Auth(), V311)
    with pytest.raises(ValueError, match="packet identifier"):
        encode(Publish("a", b"", qos=1), V311)
    with pytest.raises(TypeError):
        encode("PUBLISH", V311)  # type: ignore[arg-type]


def test_3x_encoding_leaves_out_what_only_mqtt_5_carries() -> None:
    props = Properties(reason_string="why")
    assert encode(Puback(1, 0x80, props), V311) == b"\x40\x02\x00\x01"
    assert encode(Disconnect(0x8E, props), V311) == b"\xe0\x00"
    assert encode(Publish("a", b"", properties=Properties(topic_alias=1)), V311) == (
        b"\x30\x03\x00\x01a"
    )
