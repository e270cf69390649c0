"""What a subscriber receives: the properties that travel with a message, and one
delivery encoded for one client (protocol version, topic alias, subscription ids, expiry)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sluice_gateway.codec import Properties, encode_publish
from sluice_gateway.session import Message

FORWARDED_PROPS = (
    "payload_format_indicator",
    "content_type",
    "response_topic",
    "correlation_data",
    "user_properties",
)


def forwardable(props: Properties | None) -> tuple[Properties | None, float | None]:
    """Split a PUBLISH's properties into what subscribers get and its expiry deadline."""
    if props is None:
        return None, None
    expires = None
    if props.message_expiry_interval is not None:
        expires = time.monotonic() + props.message_expiry_interval
    kept = _forwarded(props)
    return kept, expires


def _forwarded(props: Properties) -> Properties | None:
    kept = Properties()
    empty = True
    for name in FORWARDED_PROPS:
        value = getattr(props, name)
        if value is not None:
            setattr(kept, name, value)
            empty = False
    return None if empty else kept


class OutboundAliases:
    """Topic aliases this server assigns towards one MQTT 5 client (up to its maximum)."""

    __slots__ = ("assigned", "maximum")

    def __init__(self, maximum: int = 0) -> None:
        self.maximum = maximum
        self.assigned: dict[str, int] = {}

    def alias(self, topic: str) -> tuple[int | None, bool]:
        """(alias, already known): a known alias lets the PUBLISH carry an empty topic."""
        alias = self.assigned.get(topic)
        if alias is not None:
            return alias, True
        if len(self.assigned) < self.maximum:
            alias = self.assigned[topic] = len(self.assigned) + 1
            return alias, False
        return None, False


def encode_delivery(
    version: int,
    msg: Message,
    qos: int,
    retain: bool,
    sub_ids: Sequence[int],
    packet_id: int | None,
    dup: bool,
    aliases: OutboundAliases,
) -> bytes:
    if version != 5:
        return encode_publish(msg.topic, msg.payload, qos, retain, dup, packet_id, version)
    props = msg.props
    topic = msg.topic
    if sub_ids or msg.expires_at is not None or aliases.maximum:
        props = (_forwarded(props) if props is not None else None) or Properties()
        if sub_ids:
            props.subscription_identifiers = list(sub_ids)
        if msg.expires_at is not None:
            props.message_expiry_interval = max(0, int(msg.expires_at - time.monotonic()))
        if aliases.maximum:
            alias, known = aliases.alias(topic)
            if alias is not None:
                props.topic_alias = alias
                if known:
                    topic = ""
    return encode_publish(topic, msg.payload, qos, retain, dup, packet_id, 5, props)
