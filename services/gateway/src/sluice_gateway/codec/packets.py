"""One dataclass per MQTT control packet, the same for 3.1, 3.1.1 and 5.0.

Fields that only exist on the wire in MQTT 5 (properties, most reason codes, subscription
options other than QoS) keep their defaults when decoded from 3.x and are not written to 3.x.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from sluice_gateway.codec.properties import Properties


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


@dataclass(slots=True)
class Connect:
    """CONNECT. `protocol_name` is "MQIsdp" for MQTT 3.1 (level 3) and "MQTT" otherwise."""

    protocol_level: int
    client_id: str
    clean_start: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties | None = None
    protocol_name: str = "MQTT"


@dataclass(slots=True)
class Connack:
    """CONNACK. `reason_code` is the 3.x return code (0-5) or the MQTT 5 reason code."""

    session_present: bool
    reason_code: int
    properties: Properties | None = None


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties | None = None


@dataclass(slots=True)
class Puback:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubrec:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubrel:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubcomp:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Subscription:
    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    subscriptions: list[Subscription]
    properties: Properties | None = None


@dataclass(slots=True)
class Suback:
    """SUBACK. In 3.x the codes are granted QoS 0-2 or 0x80 (failure)."""

    packet_id: int
    reason_codes: list[int]
    properties: Properties | None = None


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: Properties | None = None


@dataclass(slots=True)
class Unsuback:
    """UNSUBACK. Reason codes only exist on the wire in MQTT 5; decoding 3.x gives []."""

    packet_id: int
    reason_codes: list[int]
    properties: Properties | None = None


@dataclass(slots=True)
class Pingreq:
    pass


@dataclass(slots=True)
class Pingresp:
    pass


@dataclass(slots=True)
class Disconnect:
    """DISCONNECT. Reason code and properties only exist on the wire in MQTT 5."""

    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Auth:
    """AUTH, MQTT 5 only (enhanced authentication)."""

    reason_code: int = 0
    properties: Properties | None = None


Packet: TypeAlias = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
