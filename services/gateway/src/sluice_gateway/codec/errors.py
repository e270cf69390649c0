"""Errors raised while decoding MQTT packets, each carrying an MQTT 5 reason code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice_gateway.codec.codes import (
    MALFORMED_PACKET,
    PACKET_TOO_LARGE,
    PROTOCOL_ERROR,
    UNSUPPORTED_PROTOCOL_VERSION,
)

if TYPE_CHECKING:
    from sluice_gateway.codec.packets import Packet


class ProtocolError(Exception):
    """The peer broke the MQTT protocol; the connection must be closed.

    `reason_code` is the MQTT 5 reason code to put in a CONNACK or DISCONNECT before closing.
    `packets` holds the valid packets that preceded the bad one in the same `feed()` call.
    """

    reason_code: int
    message: str
    packets: list[Packet]

    def __init__(self, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.packets = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(0x{self.reason_code:02X}, {self.message!r})"


class PacketTooLarge(ProtocolError):
    """The fixed header announced a packet bigger than the decoder accepts."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            PACKET_TOO_LARGE,
            f"packet of {size} bytes exceeds the maximum packet size of {limit} bytes",
        )
        self.size = size
        self.limit = limit


class UnsupportedProtocolVersion(ProtocolError):
    """A CONNECT asked for a protocol level this codec does not speak.

    The server answers CONNACK 0x01 to 3.x clients and 0x84 to MQTT 5 ones, so the level is kept.
    """

    def __init__(self, protocol_level: int, protocol_name: str) -> None:
        super().__init__(
            UNSUPPORTED_PROTOCOL_VERSION,
            f"protocol {protocol_name!r} level {protocol_level} is not supported; "
            "use MQTT 3.1 ('MQIsdp', 3), 3.1.1 ('MQTT', 4) or 5.0 ('MQTT', 5)",
        )
        self.protocol_level = protocol_level
        self.protocol_name = protocol_name


def malformed(message: str) -> ProtocolError:
    """A Malformed Packet error (0x81): the bytes do not follow the packet grammar."""
    return ProtocolError(MALFORMED_PACKET, message)


def protocol_error(message: str) -> ProtocolError:
    """A Protocol Error (0x82): the bytes parse but break a rule of the specification."""
    return ProtocolError(PROTOCOL_ERROR, message)
