"""MQTT 5 properties (spec section 2.2.2): the dataclass, and its reading and writing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from sluice_gateway.codec.codes import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    PACKET_NAMES,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    TOPIC_ALIAS_INVALID,
    UNSUBACK,
    UNSUBSCRIBE,
)
from sluice_gateway.codec.datatypes import (
    MAX_VARINT,
    Reader,
    encode_binary,
    encode_utf8,
    encode_varint,
)
from sluice_gateway.codec.errors import ProtocolError, malformed, protocol_error

# Will properties travel inside CONNECT but have their own allowed set. Packet type 0 is
# reserved, so it serves as their context without clashing with a real packet type.
WILL_PROPERTIES: Final = 0


@dataclass(slots=True)
class Properties:
    """One optional attribute per MQTT 5 property; None means absent."""

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: list[int] | None = None
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_properties: list[tuple[str, str]] | None = None
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None


# Wire data types of property values.
BYTE, UINT16, UINT32, VARINT, UTF8, BINARY, UTF8_PAIR = range(7)

_READERS: Final[dict[int, Callable[[Reader, str], Any]]] = {
    BYTE: Reader.byte,
    UINT16: Reader.uint16,
    UINT32: Reader.uint32,
    VARINT: Reader.varint,
    UTF8: Reader.utf8,
    BINARY: Reader.binary,
    UTF8_PAIR: Reader.utf8_pair,
}


def _flag(name: str, value: int) -> None:
    if value > 1:
        raise protocol_error(f"property {name} is {value}; only 0 and 1 are allowed")


def _non_zero(name: str, value: int) -> None:
    if value == 0:
        raise protocol_error(f"property {name} must not be 0")


def _topic_alias(name: str, value: int) -> None:
    if value == 0:
        raise ProtocolError(TOPIC_ALIAS_INVALID, "topic alias 0 is not allowed")


def _topic_name(name: str, value: str) -> None:
    if not value or "+" in value or "#" in value:
        raise protocol_error(f"property {name} {value!r} is not a valid topic name")


class PropertySpec(NamedTuple):
    identifier: int
    name: str
    kind: int
    contexts: frozenset[int]
    check: Callable[[str, Any], None] | None = None

    @property
    def read(self) -> Callable[[Reader, str], Any]:
        return _READERS[self.kind]


def _carried_by(*contexts: int) -> frozenset[int]:
    return frozenset(contexts)


_MESSAGE = _carried_by(PUBLISH, WILL_PROPERTIES)
_ACKS = (PUBACK, PUBREC, PUBREL, PUBCOMP)

SUBSCRIPTION_IDENTIFIER: Final = 0x0B
USER_PROPERTY: Final = 0x26

# Section 2.2.2.2: identifier, attribute, data type, the packets allowed to carry it, and the
# check of its value where the specification restricts it.
PROPERTY_SPECS: Final[dict[int, PropertySpec]] = {
    spec.identifier: spec
    for spec in (
        PropertySpec(0x01, "payload_format_indicator", BYTE, _MESSAGE, _flag),
        PropertySpec(0x02, "message_expiry_interval", UINT32, _MESSAGE),
        PropertySpec(0x03, "content_type", UTF8, _MESSAGE),
        PropertySpec(0x08, "response_topic", UTF8, _MESSAGE, _topic_name),
        PropertySpec(0x09, "correlation_data", BINARY, _MESSAGE),
        PropertySpec(
            0x0B, "subscription_identifiers", VARINT, _carried_by(PUBLISH, SUBSCRIBE), _non_zero
        ),
        PropertySpec(
            0x11, "session_expiry_interval", UINT32, _carried_by(CONNECT, CONNACK, DISCONNECT)
        ),
        PropertySpec(0x12, "assigned_client_identifier", UTF8, _carried_by(CONNACK)),
        PropertySpec(0x13, "server_keep_alive", UINT16, _carried_by(CONNACK)),
        PropertySpec(0x15, "authentication_method", UTF8, _carried_by(CONNECT, CONNACK, AUTH)),
        PropertySpec(0x16, "authentication_data", BINARY, _carried_by(CONNECT, CONNACK, AUTH)),
        PropertySpec(0x17, "request_problem_information", BYTE, _carried_by(CONNECT), _flag),
        PropertySpec(0x18, "will_delay_interval", UINT32, _carried_by(WILL_PROPERTIES)),
        PropertySpec(0x19, "request_response_information", BYTE, _carried_by(CONNECT), _flag),
        PropertySpec(0x1A, "response_information", UTF8, _carried_by(CONNACK)),
        PropertySpec(0x1C, "server_reference", UTF8, _carried_by(CONNACK, DISCONNECT)),
        PropertySpec(
            0x1F,
            "reason_string",
            UTF8,
            _carried_by(*_ACKS, CONNACK, SUBACK, UNSUBACK, DISCONNECT, AUTH),
        ),
        PropertySpec(0x21, "receive_maximum", UINT16, _carried_by(CONNECT, CONNACK), _non_zero),
        PropertySpec(0x22, "topic_alias_maximum", UINT16, _carried_by(CONNECT, CONNACK)),
        PropertySpec(0x23, "topic_alias", UINT16, _carried_by(PUBLISH), _topic_alias),
        PropertySpec(0x24, "maximum_qos", BYTE, _carried_by(CONNACK), _flag),
        PropertySpec(0x25, "retain_available", BYTE, _carried_by(CONNACK), _flag),
        PropertySpec(
            0x26,
            "user_properties",
            UTF8_PAIR,
            _MESSAGE
            | _carried_by(*_ACKS, CONNECT, CONNACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK)
            | _carried_by(DISCONNECT, AUTH),
        ),
        PropertySpec(0x27, "maximum_packet_size", UINT32, _carried_by(CONNECT, CONNACK), _non_zero),
        PropertySpec(0x28, "wildcard_subscription_available", BYTE, _carried_by(CONNACK), _flag),
        PropertySpec(0x29, "subscription_identifier_available", BYTE, _carried_by(CONNACK), _flag),
        PropertySpec(0x2A, "shared_subscription_available", BYTE, _carried_by(CONNACK), _flag),
    )
}
# Per identifier: (attribute, value reader, allowed contexts, value check), for the hot loop.
_DECODING: Final = {
    spec.identifier: (spec.name, spec.read, spec.contexts, spec.check)
    for spec in PROPERTY_SPECS.values()
}


def context_name(context: int) -> str:
    return PACKET_NAMES.get(context, "will properties")


def decode_properties(reader: Reader, context: int) -> Properties | None:
    """Read a property length and the properties after it; None when the length is 0."""
    buf = reader.buf
    if reader.pos < reader.end and buf[reader.pos] < 0x80:
        length = buf[reader.pos]
        reader.pos += 1
    else:
        length = reader.varint("property length")
    if length == 0:
        return None
    end = reader.pos + length
    if end > reader.end:
        raise malformed(f"{reader.packet} is truncated: properties run past the end of the packet")
    props = Properties()
    field = Reader(buf, reader.pos, end, reader.packet)
    while field.pos < end:
        # Identifiers are variable byte integers, but all defined ones fit in one byte.
        identifier = buf[field.pos]
        field.pos += 1
        decoding = _DECODING.get(identifier)
        if decoding is None:
            raise malformed(
                f"unknown property identifier 0x{identifier:02X} in {context_name(context)}"
            )
        name, read, contexts, check = decoding
        if context not in contexts:
            raise malformed(f"property {name} is not allowed in {context_name(context)}")
        value = read(field, name)
        if check is not None:
            check(name, value)
        if identifier == USER_PROPERTY:
            if props.user_properties is None:
                props.user_properties = [value]
            else:
                props.user_properties.append(value)
        elif identifier == SUBSCRIPTION_IDENTIFIER:
            # PUBLISH carries one per matching subscription; SUBSCRIBE sets one.
            if props.subscription_identifiers is None:
                props.subscription_identifiers = [value]
            elif context == PUBLISH:
                props.subscription_identifiers.append(value)
            else:
                raise _repeated(name, context)
        elif getattr(props, name) is None:
            setattr(props, name, value)
        else:
            raise _repeated(name, context)
    reader.pos = end
    return props


def _repeated(name: str, context: int) -> ProtocolError:
    return protocol_error(f"property {name} appears more than once in {context_name(context)}")


def encode_properties(props: Properties | None, context: int) -> bytes:
    """Property length followed by the properties; a lone 0 byte when there are none.

    Raises ValueError for a property the packet may not carry or a value the wire cannot hold.
    """
    if props is None:
        return b"\x00"
    out = bytearray()
    for spec in PROPERTY_SPECS.values():
        value = getattr(props, spec.name)
        if value is None:
            continue
        if context not in spec.contexts:
            raise ValueError(f"property {spec.name} is not allowed in {context_name(context)}")
        try:
            _write_value(out, spec, value)
        except OverflowError:
            raise ValueError(f"property {spec.name} value {value!r} is out of range") from None
    return encode_varint(len(out)) + out


def _write_value(out: bytearray, spec: PropertySpec, value: Any) -> None:
    identifier = spec.identifier
    kind = spec.kind
    name = spec.name
    if kind == UTF8_PAIR:
        for key, text in value:
            out.append(identifier)
            out += encode_utf8(key, f"{name} key")
            out += encode_utf8(text, f"{name} value")
    elif kind == VARINT:
        for number in value:
            if not 1 <= number <= MAX_VARINT:
                raise OverflowError
            out.append(identifier)
            out += encode_varint(number)
    else:
        out.append(identifier)
        if kind == BYTE:
            out.append(value)
        elif kind == UINT16:
            out += value.to_bytes(2, "big")
        elif kind == UINT32:
            out += value.to_bytes(4, "big")
        elif kind == UTF8:
            out += encode_utf8(value, name)
        else:
            out += encode_binary(value, name)
