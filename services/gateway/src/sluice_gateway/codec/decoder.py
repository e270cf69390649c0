"""Incremental decoding of a byte stream into MQTT packets."""

from __future__ import annotations

from typing import Final

from sluice_gateway.codec.codes import (
    CONNECT,
    MALFORMED_PACKET,
    MQTT_5,
    PACKET_NAMES,
    PROTOCOL_ERROR,
    PUBLISH,
    PUBREL,
    TOPIC_NAME_INVALID,
)
from sluice_gateway.codec.datatypes import MAX_VARINT, Reader, read_varint
from sluice_gateway.codec.errors import (
    PacketTooLarge,
    ProtocolError,
    malformed,
    protocol_error,
)
from sluice_gateway.codec.packets import Packet, Publish
from sluice_gateway.codec.parsers import ACK_CLASSES, PARSERS, parse_connect, parse_protocol
from sluice_gateway.codec.properties import decode_properties

# Fixed-header flags each packet type must carry (PUBLISH uses them for DUP, QoS and RETAIN).
_REQUIRED_FLAGS: Final = (-1, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0)


class StreamDecoder:
    """Turns the bytes of one connection into packets, whatever way the stream is chunked.

    `protocol_level` decides whether MQTT 5 fields are on the wire. A server-side decoder learns
    it from CONNECT, as soon as the level is read (so even a malformed CONNECT can be refused
    with a CONNACK of its version); a client-side decoder is given the level it connected with.
    `max_packet_size` bounds the whole packet, fixed header included, like the MQTT 5 Maximum
    Packet Size.
    After a ProtocolError the stream is unusable: close the connection.
    """

    __slots__ = ("_need", "_pending", "max_packet_size", "protocol_level")

    def __init__(
        self, max_packet_size: int = MAX_VARINT, protocol_level: int | None = None
    ) -> None:
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self._pending = bytearray()
        # Bytes the pending packet needs in all; 0 while its fixed header is incomplete.
        self._need = 0

    @property
    def buffered(self) -> int:
        """Bytes received that wait for the rest of their packet."""
        return len(self._pending)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Decode every packet completed by `data`; keep the incomplete tail for later.

        Raises ProtocolError (or a subclass); its `packets` holds the packets decoded before it.
        """
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need:
                return []  # still inside one large packet: do not rescan it
            buf = bytes(pending)
            pending.clear()
        elif type(data) is bytes:
            buf = data
        else:
            buf = bytes(data)
        packets: list[Packet] = []
        try:
            pos = self._decode(buf, packets)
        except ProtocolError as error:
            error.packets = packets
            raise
        if pos < len(buf):
            pending += memoryview(buf)[pos:]
        return packets

    def _decode(self, buf: bytes, packets: list[Packet]) -> int:
        """Append the complete packets in `buf` to `packets`; return where an incomplete one starts.

        PUBLISH and the short acknowledgements are decoded inline: they are most of the traffic.
        """
        append = packets.append
        level = self.protocol_level
        limit = self.max_packet_size
        end = len(buf)
        pos = 0
        while pos < end:
            first = buf[pos]
            if pos + 1 == end:
                self._need = 0
                return pos
            length = buf[pos + 1]
            body = pos + 2
            if length & 0x80:
                length, body = read_varint(buf, pos + 1, end)
                if body < 0:
                    self._need = 0
                    return pos
            stop = body + length
            if stop - pos > limit:
                raise PacketTooLarge(stop - pos, limit)
            if stop > end:
                self._need = stop - pos
                return pos
            kind = first >> 4
            if kind == PUBLISH and level is not None:
                append(_decode_publish(first, buf, body, stop, level))
            elif 4 <= kind <= 7 and length == 2 and level is not None:
                # PUBACK, PUBREC, PUBREL, PUBCOMP with success and no properties.
                if (first & 0x0F) != (2 if kind == PUBREL else 0):
                    raise _bad_flags(first)
                ident = (buf[body] << 8) | buf[body + 1]
                if not ident:
                    raise protocol_error(
                        f"{PACKET_NAMES[kind]} has packet identifier 0; it must be 1-65535"
                    )
                append(ACK_CLASSES[kind](ident))
            elif kind == CONNECT:
                if first & 0x0F:
                    raise _bad_flags(first)
                reader = Reader(buf, body, stop, "CONNECT")
                name, level = parse_protocol(reader)
                # Known before the rest is checked, so a bad CONNECT is refused in its version.
                self.protocol_level = level
                append(parse_connect(reader, name, level))
            else:
                append(_decode_control(first, buf, body, stop, level))
            pos = stop
        return pos


def _decode_control(first: int, buf: bytes, body: int, stop: int, level: int | None) -> Packet:
    """Any packet but CONNECT, off the fast path."""
    kind = first >> 4
    if kind == 0:
        raise malformed("packet type 0 is reserved")
    required = _REQUIRED_FLAGS[kind]
    if required >= 0 and (first & 0x0F) != required:
        raise _bad_flags(first)
    if level is None:
        raise protocol_error(
            f"got {PACKET_NAMES[kind]} before CONNECT; the first packet must be CONNECT"
        )
    return PARSERS[kind](Reader(buf, body, stop, PACKET_NAMES[kind]), level)


def _bad_flags(first: int) -> ProtocolError:
    kind = first >> 4
    return malformed(
        f"{PACKET_NAMES[kind]} has fixed-header flags {first & 0x0F:04b}; "
        f"they must be {_REQUIRED_FLAGS[kind]:04b}"
    )


def _decode_publish(first: int, buf: bytes, body: int, stop: int, level: int) -> Publish:
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise malformed("PUBLISH has QoS 3; it must be 0, 1 or 2")
    if first & 0x08 and not qos:
        raise ProtocolError(
            PROTOCOL_ERROR if level == MQTT_5 else MALFORMED_PACKET,
            "PUBLISH sets DUP with QoS 0; DUP is only for QoS 1 and 2 redeliveries",
        )
    pos = body + 2
    if pos > stop:
        raise _truncated_publish("topic name")
    topic_end = pos + ((buf[body] << 8) | buf[body + 1])
    if topic_end > stop:
        raise _truncated_publish("topic name")
    try:
        topic = buf[pos:topic_end].decode()
    except UnicodeDecodeError:
        raise malformed("PUBLISH topic name is not well-formed UTF-8") from None
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise _bad_topic(topic)
    pos = topic_end
    packet_id = None
    if qos:
        if pos + 2 > stop:
            raise _truncated_publish("packet identifier")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        if not packet_id:
            raise protocol_error("PUBLISH has packet identifier 0; it must be 1-65535")
        pos += 2
    properties = None
    if level == MQTT_5:
        if pos >= stop:
            raise _truncated_publish("property length")
        if buf[pos]:
            reader = Reader(buf, pos, stop, "PUBLISH")
            properties = decode_properties(reader, PUBLISH)
            pos = reader.pos
        else:
            pos += 1
        if not topic and (properties is None or properties.topic_alias is None):
            raise protocol_error("PUBLISH has an empty topic name and no topic alias")
    elif not topic:
        raise ProtocolError(TOPIC_NAME_INVALID, "PUBLISH topic name is empty")
    return Publish(
        topic, buf[pos:stop], qos, (first & 0x01) != 0, (first & 0x08) != 0, packet_id, properties
    )


def _truncated_publish(field: str) -> ProtocolError:
    return malformed(f"PUBLISH is truncated: {field} runs past the end of the packet")


def _bad_topic(topic: str) -> ProtocolError:
    if "\x00" in topic:
        return malformed("PUBLISH topic name contains the character U+0000")
    return ProtocolError(
        TOPIC_NAME_INVALID,
        f"PUBLISH topic name {topic!r} contains a wildcard; publish to a topic without + or #",
    )
