"""Encoding of MQTT packets to bytes for a given protocol level.

The encoder trusts its caller to build valid packets: `encode` only refuses what the wire cannot
carry (ValueError), and the hot-path helpers check even less. Fields MQTT 3.x has no room for
(properties, most reason codes, subscription options other than QoS) are left out.
"""

from __future__ import annotations

import struct
from typing import Final

from sluice_gateway.codec.codes import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    MQTT_5,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
)
from sluice_gateway.codec.datatypes import encode_binary, encode_utf8, encode_varint
from sluice_gateway.codec.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from sluice_gateway.codec.properties import WILL_PROPERTIES, Properties, encode_properties

_NO_PROPERTIES: Final = b"\x00"
_HEADER_AND_UINT16 = struct.Struct(">BBH").pack
_UINT16 = struct.Struct(">H").pack


def _fixed_header(first: int, size: int) -> bytes:
    if size < 0x80:
        return bytes((first, size))
    return bytes((first,)) + encode_varint(size)


def _packet(first: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return _fixed_header(first, len(body)) + body


def encode_publish(
    topic: str | bytes,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    protocol_level: int,
    properties: Properties | None = None,
) -> bytes:
    """PUBLISH without building a dataclass: the gateway's delivery path."""
    raw_topic = topic.encode() if isinstance(topic, str) else topic
    topic_size = len(raw_topic)
    if protocol_level == MQTT_5:
        props = _NO_PROPERTIES if properties is None else encode_properties(properties, PUBLISH)
    else:
        props = b""
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    if qos:
        if packet_id is None:
            raise ValueError("a QoS 1 or 2 PUBLISH needs a packet identifier")
        size = 4 + topic_size + len(props) + len(payload)
        middle = _UINT16(packet_id) + props
    else:
        size = 2 + topic_size + len(props) + len(payload)
        middle = props
    if size < 0x80:
        head = _HEADER_AND_UINT16(first, size, topic_size)
    else:
        head = _fixed_header(first, size) + _UINT16(topic_size)
    return b"".join((head, raw_topic, middle, payload))


def encode_ack(
    packet_type: int, packet_id: int, protocol_level: int, reason_code: int = 0
) -> bytes:
    """PUBACK, PUBREC, PUBREL or PUBCOMP without properties.

    MQTT 5 lets a success code go unsaid; MQTT 3.x has no reason code at all.
    """
    if packet_type == PUBREL:
        first = 0x62
    elif PUBACK <= packet_type <= PUBCOMP:
        first = packet_type << 4
    else:
        raise ValueError(f"packet type {packet_type} is not PUBACK, PUBREC, PUBREL or PUBCOMP")
    if reason_code and protocol_level == MQTT_5:
        return _HEADER_AND_UINT16(first, 3, packet_id) + bytes((reason_code,))
    return _HEADER_AND_UINT16(first, 2, packet_id)


def encode(packet: Packet, protocol_level: int) -> bytes:
    """Encode any packet. A CONNECT is written at its own `protocol_level`."""
    try:
        return _encode(packet, protocol_level)
    except (struct.error, OverflowError) as error:
        name = type(packet).__name__
        raise ValueError(f"cannot encode {name}: a field is out of range ({error})") from None


def _encode(packet: Packet, protocol_level: int) -> bytes:
    v5 = protocol_level == MQTT_5
    match packet:
        case Publish():
            return encode_publish(
                packet.topic,
                packet.payload,
                packet.qos,
                packet.retain,
                packet.dup,
                packet.packet_id,
                protocol_level,
                packet.properties,
            )
        case Puback() | Pubrec() | Pubrel() | Pubcomp():
            return _encode_ack(packet, protocol_level)
        case Connect():
            return _encode_connect(packet)
        case Connack():
            flags = bytes((0x01 if packet.session_present else 0x00, packet.reason_code))
            if v5:
                return _packet(CONNACK << 4, flags, encode_properties(packet.properties, CONNACK))
            return _packet(CONNACK << 4, flags)
        case Subscribe():
            return _encode_subscribe(packet, v5)
        case Suback():
            props = encode_properties(packet.properties, SUBACK) if v5 else b""
            codes = bytes(packet.reason_codes)
            return _packet(SUBACK << 4, _UINT16(packet.packet_id), props, codes)
        case Unsubscribe():
            props = encode_properties(packet.properties, UNSUBSCRIBE) if v5 else b""
            filters = [encode_utf8(f, "topic filter") for f in packet.topic_filters]
            return _packet((UNSUBSCRIBE << 4) | 0x02, _UINT16(packet.packet_id), props, *filters)
        case Unsuback():
            if not v5:
                return _packet(UNSUBACK << 4, _UINT16(packet.packet_id))
            props = encode_properties(packet.properties, UNSUBACK)
            return _packet(
                UNSUBACK << 4, _UINT16(packet.packet_id), props, bytes(packet.reason_codes)
            )
        case Pingreq():
            return b"\xc0\x00"
        case Pingresp():
            return b"\xd0\x00"
        case Disconnect():
            return _encode_short_form(DISCONNECT, packet.reason_code, packet.properties, v5)
        case Auth():
            if not v5:
                raise ValueError("AUTH only exists in MQTT 5")
            return _encode_short_form(AUTH, packet.reason_code, packet.properties, v5)
    raise TypeError(f"cannot encode {type(packet).__name__}: not an MQTT packet")


def _encode_ack(packet: Puback | Pubrec | Pubrel | Pubcomp, protocol_level: int) -> bytes:
    kind = _ACK_TYPES[type(packet)]
    if protocol_level == MQTT_5 and packet.properties is not None:
        props = encode_properties(packet.properties, kind)
        if props != _NO_PROPERTIES:
            first = 0x62 if kind == PUBREL else kind << 4
            return _packet(first, _UINT16(packet.packet_id), bytes((packet.reason_code,)), props)
    return encode_ack(kind, packet.packet_id, protocol_level, packet.reason_code)


_ACK_TYPES: Final[dict[type, int]] = {
    Puback: PUBACK,
    Pubrec: PUBREC,
    Pubrel: PUBREL,
    Pubcomp: PUBCOMP,
}


def _encode_short_form(
    kind: int, reason_code: int, properties: Properties | None, v5: bool
) -> bytes:
    """DISCONNECT and AUTH: MQTT 5 drops the reason code and properties when both are defaults."""
    if not v5:
        return bytes((kind << 4, 0))
    props = encode_properties(properties, kind)
    if props == _NO_PROPERTIES:
        if not reason_code:
            return bytes((kind << 4, 0))
        if kind == DISCONNECT:
            return bytes((kind << 4, 1, reason_code))
    return _packet(kind << 4, bytes((reason_code,)), props)


def _encode_connect(packet: Connect) -> bytes:
    v5 = packet.protocol_level == MQTT_5
    will = packet.will
    flags = 0x02 if packet.clean_start else 0x00
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0x00)
    if packet.password is not None:
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    parts = [
        encode_utf8(packet.protocol_name, "protocol name"),
        bytes((packet.protocol_level, flags)),
        _UINT16(packet.keepalive),
    ]
    if v5:
        parts.append(encode_properties(packet.properties, CONNECT))
    parts.append(encode_utf8(packet.client_id, "client identifier"))
    if will is not None:
        if v5:
            parts.append(encode_properties(will.properties, WILL_PROPERTIES))
        parts.append(encode_utf8(will.topic, "will topic"))
        parts.append(encode_binary(will.payload, "will payload"))
    if packet.username is not None:
        parts.append(encode_utf8(packet.username, "user name"))
    if packet.password is not None:
        parts.append(encode_binary(packet.password, "password"))
    return _packet(CONNECT << 4, *parts)


def _encode_subscribe(packet: Subscribe, v5: bool) -> bytes:
    parts = [_UINT16(packet.packet_id)]
    if v5:
        parts.append(encode_properties(packet.properties, SUBSCRIBE))
    for sub in packet.subscriptions:
        options = sub.qos
        if v5:
            options |= (
                (0x04 if sub.no_local else 0)
                | (0x08 if sub.retain_as_published else 0)
                | (sub.retain_handling << 4)
            )
        parts.append(encode_utf8(sub.topic_filter, "topic filter"))
        parts.append(bytes((options,)))
    return _packet((SUBSCRIBE << 4) | 0x02, *parts)
