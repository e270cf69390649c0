"""MQTT 3.1, 3.1.1 and 5.0 packet codec: pure, no I/O.

`StreamDecoder` turns a connection's bytes into packet dataclasses and validates everything the
specifications say about the bytes; `encode`, `encode_publish` and `encode_ack` go the other way.
The packet-type, reason-code and CONNACK return-code constants of `codes` are re-exported too.
"""

from sluice_gateway.codec.codes import *  # noqa: F403
from sluice_gateway.codec.decoder import StreamDecoder
from sluice_gateway.codec.encoder import encode, encode_ack, encode_publish
from sluice_gateway.codec.errors import PacketTooLarge, ProtocolError, UnsupportedProtocolVersion
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
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)
from sluice_gateway.codec.properties import Properties

__all__ = [
    "Auth",
    "Connack",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketTooLarge",
    "Pingreq",
    "Pingresp",
    "Properties",
    "ProtocolError",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "StreamDecoder",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedProtocolVersion",
    "Will",
    "encode",
    "encode_ack",
    "encode_publish",
]
