"""Parsers for the body of every control packet except PUBLISH (inlined in the stream decoder).

Each parser reads one complete packet body and checks everything the specification says about
its bytes; session rules (a second CONNECT, unknown packet ids, topic permissions) are not here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sluice_gateway.codec.codes import (
    ACK_REASONS_V5,
    AUTH,
    AUTH_REASONS_V5,
    CONNACK,
    CONNACK_REASONS_V5,
    CONNACK_RETURN_CODES_V3,
    CONNECT,
    DISCONNECT,
    DISCONNECT_REASONS_V5,
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBACK_REASONS_V5,
    SUBACK_RETURN_CODES_V3,
    SUBSCRIBE,
    TOPIC_NAME_INVALID,
    UNSUBACK,
    UNSUBACK_REASONS_V5,
    UNSUBSCRIBE,
)
from sluice_gateway.codec.datatypes import Reader
from sluice_gateway.codec.errors import (
    ProtocolError,
    UnsupportedProtocolVersion,
    malformed,
    protocol_error,
)
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
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from sluice_gateway.codec.properties import WILL_PROPERTIES, decode_properties

# Protocol name each supported level must be announced with.
PROTOCOL_NAMES: Final = {MQTT_3_1: "MQIsdp", MQTT_3_1_1: "MQTT", MQTT_5: "MQTT"}


def check_topic_name(topic: str, field: str) -> None:
    """A topic name (as opposed to a filter) is not empty and holds no wildcard."""
    if not topic:
        raise ProtocolError(TOPIC_NAME_INVALID, f"{field} is empty")
    if "+" in topic or "#" in topic:
        raise ProtocolError(
            TOPIC_NAME_INVALID, f"{field} {topic!r} contains a wildcard; only filters may"
        )


def packet_id(reader: Reader) -> int:
    value = reader.uint16("packet identifier")
    if value == 0:
        raise protocol_error(f"{reader.packet} has packet identifier 0; it must be 1-65535")
    return value


def _reason_code(reader: Reader, allowed: frozenset[int]) -> int:
    code = reader.byte("reason code")
    if code not in allowed:
        raise protocol_error(f"reason code 0x{code:02X} is not valid in {reader.packet}")
    return code


def parse_protocol(reader: Reader) -> tuple[str, int]:
    """The protocol name and level that open a CONNECT: what the rest of it is read with."""
    name = reader.utf8("protocol name")
    level = reader.byte("protocol level")
    if name not in ("MQTT", "MQIsdp"):
        raise protocol_error(f"protocol name {name!r} is not MQTT")
    if PROTOCOL_NAMES.get(level) != name:
        raise UnsupportedProtocolVersion(level, name)
    return name, level


def parse_connect(reader: Reader, name: str, level: int) -> Connect:
    """The rest of a CONNECT, after `parse_protocol`."""
    flags = reader.byte("connect flags")
    if flags & 0x01:
        raise malformed("reserved bit 0 of the CONNECT flags is set")
    has_will = flags & 0x04
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if will_qos == 3:
        raise malformed("will QoS is 3; it must be 0, 1 or 2")
    if not has_will and (will_qos or will_retain):
        raise malformed("will QoS and will retain must be 0 when the will flag is 0")
    has_username = flags & 0x80
    has_password = flags & 0x40
    if has_password and not has_username and level != MQTT_5:
        raise malformed("password flag is set without the user name flag (MQTT 3.1.1 forbids it)")
    keepalive = reader.uint16("keep alive")
    properties = decode_properties(reader, CONNECT) if level == MQTT_5 else None
    if (
        properties is not None
        and properties.authentication_data is not None
        and properties.authentication_method is None
    ):
        raise protocol_error("CONNECT carries authentication data without an authentication method")
    client_id = reader.utf8("client identifier")
    will = None
    if has_will:
        will_properties = decode_properties(reader, WILL_PROPERTIES) if level == MQTT_5 else None
        topic = reader.utf8("will topic")
        check_topic_name(topic, "will topic")
        payload = reader.binary("will payload")
        will = Will(topic, payload, will_qos, will_retain, will_properties)
    username = reader.utf8("user name") if has_username else None
    password = reader.binary("password") if has_password else None
    reader.expect_end()
    return Connect(
        level, client_id, bool(flags & 0x02), keepalive, username, password, will, properties, name
    )


def parse_connack(reader: Reader, level: int) -> Connack:
    flags = reader.byte("acknowledge flags")
    if flags & 0xFE:
        raise malformed("reserved bits of the CONNACK acknowledge flags are set")
    if level == MQTT_5:
        code = _reason_code(reader, CONNACK_REASONS_V5)
        properties = decode_properties(reader, CONNACK)
    else:
        code = _reason_code(reader, CONNACK_RETURN_CODES_V3)
        properties = None
    if flags and code:
        raise protocol_error("CONNACK sets session present on a refused connection")
    reader.expect_end()
    return Connack(bool(flags), code, properties)


_AckClass = type[Puback] | type[Pubrec] | type[Pubrel] | type[Pubcomp]
ACK_CLASSES: Final[dict[int, _AckClass]] = {
    PUBACK: Puback,
    PUBREC: Pubrec,
    PUBREL: Pubrel,
    PUBCOMP: Pubcomp,
}


def _ack_parser(kind: int) -> Callable[[Reader, int], Packet]:
    """PUBACK, PUBREC, PUBREL and PUBCOMP share one layout; MQTT 5 may shorten it."""
    cls = ACK_CLASSES[kind]
    allowed = ACK_REASONS_V5[kind]

    def parse_ack(reader: Reader, level: int) -> Packet:
        ident = packet_id(reader)
        code = 0
        properties = None
        if level == MQTT_5 and reader.remaining:
            code = _reason_code(reader, allowed)
            if reader.remaining:
                properties = decode_properties(reader, kind)
        reader.expect_end()
        return cls(ident, code, properties)

    return parse_ack


def parse_subscribe(reader: Reader, level: int) -> Subscribe:
    ident = packet_id(reader)
    properties = decode_properties(reader, SUBSCRIBE) if level == MQTT_5 else None
    subscriptions = []
    while reader.remaining:
        topic_filter = reader.utf8("topic filter")
        options = reader.byte("subscription options")
        qos = options & 0x03
        if qos == 3:
            raise malformed(f"SUBSCRIBE asks QoS 3 for {topic_filter!r}; it must be 0, 1 or 2")
        if level != MQTT_5:
            if options & 0xFC:
                raise malformed("reserved bits of the subscription options are set")
            subscriptions.append(Subscription(topic_filter, qos))
            continue
        if options & 0xC0:
            raise malformed("reserved bits of the subscription options are set")
        retain_handling = (options >> 4) & 0x03
        if retain_handling == 3:
            raise protocol_error("retain handling 3 is not defined")
        no_local = bool(options & 0x04)
        if no_local and topic_filter.startswith("$share/"):
            raise protocol_error(f"no local is set on shared subscription {topic_filter!r}")
        subscriptions.append(
            Subscription(topic_filter, qos, no_local, bool(options & 0x08), retain_handling)
        )
    if not subscriptions:
        raise protocol_error("SUBSCRIBE must contain at least one topic filter")
    return Subscribe(ident, subscriptions, properties)


def _reason_codes(reader: Reader, allowed: frozenset[int]) -> list[int]:
    codes = list(reader.rest())
    if not codes:
        raise protocol_error(f"{reader.packet} must contain at least one reason code")
    for code in codes:
        if code not in allowed:
            raise protocol_error(f"reason code 0x{code:02X} is not valid in {reader.packet}")
    return codes


def parse_suback(reader: Reader, level: int) -> Suback:
    ident = packet_id(reader)
    if level == MQTT_5:
        properties = decode_properties(reader, SUBACK)
        return Suback(ident, _reason_codes(reader, SUBACK_REASONS_V5), properties)
    return Suback(ident, _reason_codes(reader, SUBACK_RETURN_CODES_V3))


def parse_unsubscribe(reader: Reader, level: int) -> Unsubscribe:
    ident = packet_id(reader)
    properties = decode_properties(reader, UNSUBSCRIBE) if level == MQTT_5 else None
    topic_filters = []
    while reader.remaining:
        topic_filters.append(reader.utf8("topic filter"))
    if not topic_filters:
        raise protocol_error("UNSUBSCRIBE must contain at least one topic filter")
    return Unsubscribe(ident, topic_filters, properties)


def parse_unsuback(reader: Reader, level: int) -> Unsuback:
    ident = packet_id(reader)
    if level == MQTT_5:
        properties = decode_properties(reader, UNSUBACK)
        return Unsuback(ident, _reason_codes(reader, UNSUBACK_REASONS_V5), properties)
    reader.expect_end()
    return Unsuback(ident, [])


def parse_pingreq(reader: Reader, level: int) -> Pingreq:
    reader.expect_end()
    return Pingreq()


def parse_pingresp(reader: Reader, level: int) -> Pingresp:
    reader.expect_end()
    return Pingresp()


def parse_disconnect(reader: Reader, level: int) -> Disconnect:
    code = 0
    properties = None
    if level == MQTT_5 and reader.remaining:
        code = _reason_code(reader, DISCONNECT_REASONS_V5)
        if reader.remaining:
            properties = decode_properties(reader, DISCONNECT)
    reader.expect_end()
    return Disconnect(code, properties)


def parse_auth(reader: Reader, level: int) -> Auth:
    if level != MQTT_5:
        raise malformed("packet type 15 (AUTH) is reserved before MQTT 5")
    if not reader.remaining:
        return Auth()
    # Unlike DISCONNECT, AUTH may only drop the reason code and properties together.
    code = _reason_code(reader, AUTH_REASONS_V5)
    properties = decode_properties(reader, AUTH)
    reader.expect_end()
    return Auth(code, properties)


# Every packet type but CONNECT (which sets the level) and PUBLISH (the decoder's fast path).
PARSERS: Final[dict[int, Callable[[Reader, int], Packet]]] = {
    CONNACK: parse_connack,
    PUBACK: _ack_parser(PUBACK),
    PUBREC: _ack_parser(PUBREC),
    PUBREL: _ack_parser(PUBREL),
    PUBCOMP: _ack_parser(PUBCOMP),
    SUBSCRIBE: parse_subscribe,
    SUBACK: parse_suback,
    UNSUBSCRIBE: parse_unsubscribe,
    UNSUBACK: parse_unsuback,
    PINGREQ: parse_pingreq,
    PINGRESP: parse_pingresp,
    DISCONNECT: parse_disconnect,
    AUTH: parse_auth,
}
