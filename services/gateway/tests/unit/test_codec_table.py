"""Known packets, written byte by byte from the MQTT 3.1, 3.1.1 and 5.0 specifications.

Each one must decode to the expected dataclass and encode back to exactly the same bytes.
"""

from __future__ import annotations

import pytest

from sluice_gateway.codec import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Properties,
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


def wire(text: str) -> bytes:
    """Hex with spaces and `|` separators for readability."""
    return bytes.fromhex(text.replace("|", " "))


V31, V311, V5 = 3, 4, 5

CASES: list[tuple[str, int, str, Packet]] = [
    # CONNECT: protocol name | level | flags | keep alive | [properties] | payload
    (
        "connect 3.1",
        V31,
        "10 10 | 00 06 4d 51 49 73 64 70 | 03 | 02 | 00 3c | 00 02 63 31",
        Connect(V31, "c1", protocol_name="MQIsdp"),
    ),
    (
        "connect 3.1.1 as paho sends it",
        V311,
        "10 13 | 00 04 4d 51 54 54 | 04 | 02 | 00 3c | 00 07 70 61 68 6f 31 32 33",
        Connect(V311, "paho123"),
    ),
    (
        "connect 3.1.1 with will, persistent session",
        V311,
        "10 13 | 00 04 4d 51 54 54 | 04 | 2c | 00 0a | 00 01 63 | 00 01 77 | 00 01 78",
        Connect(V311, "c", clean_start=False, keepalive=10, will=Will("w", b"x", 1, True)),
    ),
    (
        "connect 3.1.1 with empty client id, user name and password",
        V311,
        "10 18 | 00 04 4d 51 54 54 | 04 | c2 | 00 00 | 00 00"
        "| 00 05 54 6f 6b 65 6e | 00 03 61 62 63",
        Connect(V311, "", keepalive=0, username="Token", password=b"abc"),
    ),
    (
        "connect 5.0 with session expiry and receive maximum",
        V5,
        "10 24 | 00 04 4d 51 54 54 | 05 | c2 | 00 3c | 08 11 00 00 0e 10 21 00 14"
        "| 00 03 64 65 76 | 00 05 54 6f 6b 65 6e | 00 03 61 62 63",
        Connect(
            V5,
            "dev",
            username="Token",
            password=b"abc",
            properties=Properties(session_expiry_interval=3600, receive_maximum=20),
        ),
    ),
    (
        "connect 5.0 with will delay, password without user name",
        V5,
        "10 1e | 00 04 4d 51 54 54 | 05 | 4e | 00 0a | 00 | 00 01 63"
        "| 05 18 00 00 00 05 | 00 01 77 | 00 01 78 | 00 02 70 77",
        Connect(
            V5,
            "c",
            keepalive=10,
            password=b"pw",
            will=Will("w", b"x", 1, False, Properties(will_delay_interval=5)),
        ),
    ),
    # CONNACK: acknowledge flags | return or reason code | [properties]
    ("connack 3.1.1 accepted", V311, "20 02 00 00", Connack(False, 0)),
    ("connack 3.1.1 session present", V311, "20 02 01 00", Connack(True, 0)),
    ("connack 3.1.1 not authorized", V311, "20 02 00 05", Connack(False, 5)),
    ("connack 3.1 bad version", V31, "20 02 00 01", Connack(False, 1)),
    ("connack 5.0 success", V5, "20 03 00 00 00", Connack(False, 0)),
    ("connack 5.0 bad user name or password", V5, "20 03 00 86 00", Connack(False, 0x86)),
    (
        "connack 5.0 with assigned client id and topic alias maximum",
        V5,
        "20 0c | 01 | 00 | 09 12 00 03 61 62 63 22 00 0a",
        Connack(True, 0, Properties(assigned_client_identifier="abc", topic_alias_maximum=10)),
    ),
    # PUBLISH: flags in the fixed header | topic | [packet id] | [properties] | payload
    (
        "publish 3.1.1 qos 0",
        V311,
        "30 0a | 00 03 61 2f 62 | 68 65 6c 6c 6f",
        Publish("a/b", b"hello"),
    ),
    (
        "publish 3.1.1 qos 1 retained duplicate",
        V311,
        "3b 0c | 00 03 61 2f 62 | 00 2a | 68 65 6c 6c 6f",
        Publish("a/b", b"hello", qos=1, retain=True, dup=True, packet_id=42),
    ),
    (
        "publish 3.1 qos 2 empty payload",
        V31,
        "34 07 | 00 03 61 2f 62 | ff ff",
        Publish("a/b", b"", qos=2, packet_id=65535),
    ),
    (
        "publish 3.1.1 non-ascii topic",
        V311,
        "30 06 | 00 04 c3 a9 2f 62",
        Publish("é/b", b""),
    ),
    (
        "publish 5.0 qos 0 without properties",
        V5,
        "30 08 | 00 03 61 2f 62 | 00 | 68 69",
        Publish("a/b", b"hi"),
    ),
    (
        "publish 5.0 with message properties and two subscription identifiers",
        V5,
        "32 24 | 00 03 61 2f 62 | 00 01 | 1a 01 01 02 00 00 00 3c 03 00 04 6a 73 6f 6e"
        "0b 05 0b 80 01 26 00 01 6b 00 01 76 | 7b 7d",
        Publish(
            "a/b",
            b"{}",
            qos=1,
            packet_id=1,
            properties=Properties(
                payload_format_indicator=1,
                message_expiry_interval=60,
                content_type="json",
                subscription_identifiers=[5, 128],
                user_properties=[("k", "v")],
            ),
        ),
    ),
    (
        "publish 5.0 empty topic with a topic alias",
        V5,
        "30 08 | 00 00 | 03 23 00 01 | 68 69",
        Publish("", b"hi", properties=Properties(topic_alias=1)),
    ),
    # The four acknowledgements: packet id | [reason code | [properties]]
    ("puback 3.1.1", V311, "40 02 00 01", Puback(1)),
    ("pubrec 3.1.1", V311, "50 02 00 02", Pubrec(2)),
    ("pubrel 3.1.1", V311, "62 02 00 02", Pubrel(2)),
    ("pubcomp 3.1", V31, "70 02 01 00", Pubcomp(256)),
    ("puback 5.0 short form", V5, "40 02 00 01", Puback(1)),
    ("puback 5.0 no matching subscribers", V5, "40 03 00 01 10", Puback(1, 0x10)),
    (
        "puback 5.0 with reason string",
        V5,
        "40 09 | 00 01 | 87 | 05 1f 00 02 6e 6f",
        Puback(1, 0x87, Properties(reason_string="no")),
    ),
    (
        "puback 5.0 success with a user property",
        V5,
        "40 0a | 00 01 | 00 | 06 26 00 01 6b 00 00",
        Puback(1, 0, Properties(user_properties=[("k", "")])),
    ),
    ("pubrec 5.0 quota exceeded", V5, "50 03 00 07 97", Pubrec(7, 0x97)),
    ("pubrel 5.0 packet id not found", V5, "62 03 00 02 92", Pubrel(2, 0x92)),
    ("pubcomp 5.0", V5, "70 02 00 02", Pubcomp(2)),
    # SUBSCRIBE: packet id | [properties] | (filter, options)+
    (
        "subscribe 3.1.1 two filters",
        V311,
        "82 0c | 00 0a | 00 03 61 2f 23 01 | 00 01 62 00",
        Subscribe(10, [Subscription("a/#", 1), Subscription("b", 0)]),
    ),
    (
        "subscribe 5.0 with options and a subscription identifier",
        V5,
        "82 0b | 00 0a | 02 0b 07 | 00 03 61 2f 23 2d",
        Subscribe(
            10,
            [Subscription("a/#", 1, no_local=True, retain_as_published=True, retain_handling=2)],
            Properties(subscription_identifiers=[7]),
        ),
    ),
    ("suback 3.1.1", V311, "90 04 00 0a 01 80", Suback(10, [1, 0x80])),
    ("suback 5.0", V5, "90 05 00 0a 00 01 87", Suback(10, [1, 0x87])),
    ("unsubscribe 3.1.1", V311, "a2 07 00 0b 00 03 61 2f 23", Unsubscribe(11, ["a/#"])),
    ("unsubscribe 5.0", V5, "a2 08 00 0b 00 00 03 61 2f 23", Unsubscribe(11, ["a/#"])),
    ("unsuback 3.1.1", V311, "b0 02 00 0b", Unsuback(11, [])),
    ("unsuback 5.0", V5, "b0 05 00 0b 00 00 11", Unsuback(11, [0, 0x11])),
    ("pingreq", V311, "c0 00", Pingreq()),
    ("pingresp", V5, "d0 00", Pingresp()),
    ("disconnect 3.1.1", V311, "e0 00", Disconnect()),
    ("disconnect 5.0 short form", V5, "e0 00", Disconnect()),
    ("disconnect 5.0 with will message", V5, "e0 01 04", Disconnect(0x04)),
    (
        "disconnect 5.0 with session expiry",
        V5,
        "e0 07 00 05 11 00 00 00 00",
        Disconnect(0, Properties(session_expiry_interval=0)),
    ),
    ("auth 5.0 short form", V5, "f0 00", Auth()),
    (
        "auth 5.0 continue with method and data",
        V5,
        "f0 0f | 18 | 0d 15 00 05 53 43 52 41 4d 16 00 02 01 02",
        Auth(0x18, Properties(authentication_method="SCRAM", authentication_data=b"\x01\x02")),
    ),
]


@pytest.mark.parametrize(
    ("level", "hex_bytes", "packet"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_known_bytes_decode_to_the_packet_and_encode_back(
    level: int, hex_bytes: str, packet: Packet
) -> None:
    data = wire(hex_bytes)
    decoder = StreamDecoder(protocol_level=None if isinstance(packet, Connect) else level)

    assert decoder.feed(data) == [packet]
    assert decoder.buffered == 0
    assert encode(packet, level) == data


def test_connect_sets_the_level_used_for_the_rest_of_the_stream() -> None:
    connect = wire("10 0f | 00 04 4d 51 54 54 | 05 | 02 | 00 3c | 00 | 00 02 63 31")
    publish = wire("30 08 | 00 03 61 2f 62 | 00 | 68 69")
    decoder = StreamDecoder()

    packets = decoder.feed(connect + publish)

    assert packets == [Connect(V5, "c1"), Publish("a/b", b"hi")]
    assert decoder.protocol_level == V5


def test_a_paho_style_two_byte_remaining_length_round_trips() -> None:
    payload = bytes(200)
    data = wire("30 cd 01 | 00 03 61 2f 62") + payload

    assert StreamDecoder(protocol_level=V311).feed(data) == [Publish("a/b", payload)]
    assert encode(Publish("a/b", payload), V311) == data
