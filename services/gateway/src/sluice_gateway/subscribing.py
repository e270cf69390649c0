"""SUBSCRIBE and UNSUBSCRIBE: filters checked against syntax, permission, ACL and plan,
retained messages sent per retain handling, reason codes per filter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluice.topicfilter import parse_shared, validate_topic_filter
from sluice_gateway import codec as c
from sluice_gateway.acl import allowed_filter, allowed_topic
from sluice_gateway.codec import Suback, Subscribe, Unsuback, Unsubscribe, encode
from sluice_gateway.session import Message, Subscription

if TYPE_CHECKING:
    from sluice_gateway.connection import Connection


def handle_subscribe(conn: Connection, packet: Subscribe) -> None:
    session = conn.session
    assert session is not None
    v5 = conn.version == 5
    sub_id = None
    if packet.properties is not None and packet.properties.subscription_identifiers:
        sub_id = packet.properties.subscription_identifiers[0]
    codes: list[int] = []
    retained: list[tuple[Message, int, int | None]] = []
    max_subs = conn.node.limit(session, "max_subscriptions_per_connection")
    for request in packet.subscriptions:
        try:
            group, topic_filter = parse_shared(request.topic_filter)
        except ValueError:
            codes.append(c.TOPIC_FILTER_INVALID if v5 else c.SUBACK_FAILURE)
            continue
        if group is not None and request.no_local:
            conn.close("no local on a shared subscription", c.PROTOCOL_ERROR)
            return
        if validate_topic_filter(topic_filter) is not None or not conn.node.quotas.filter_allowed(
            session, topic_filter
        ):
            codes.append(c.TOPIC_FILTER_INVALID if v5 else c.SUBACK_FAILURE)
            continue
        if not session.can_subscribe or not allowed_filter(
            session.acl, session.device_id, topic_filter
        ):
            codes.append(c.NOT_AUTHORIZED if v5 else c.SUBACK_FAILURE)
            continue
        if (
            request.topic_filter not in session.subscriptions
            and len(session.subscriptions) >= max_subs
        ):
            codes.append(c.QUOTA_EXCEEDED if v5 else c.SUBACK_FAILURE)
            continue
        sub = Subscription(
            session,
            topic_filter,
            request.qos,
            share_group=group,
            no_local=request.no_local,
            retain_as_published=request.retain_as_published,
            retain_handling=request.retain_handling,
            sub_id=sub_id,
        )
        is_new = conn.node.broker.subscribe(sub)
        codes.append(request.qos)
        if group is None and (
            request.retain_handling == 0 or (request.retain_handling == 1 and is_new)
        ):
            for msg in conn.node.broker.retained_for(session.account, topic_filter):
                retained.append((msg, request.qos, sub_id))
        conn.node.events.emit(session, "subscribe", topic=request.topic_filter, qos=request.qos)
    conn.write(encode(Suback(packet.packet_id, codes), conn.version))
    for msg, granted, ident in retained:
        if session.acl and not allowed_topic(
            session.acl, session.device_id, "subscribe", msg.topic
        ):
            continue
        session.deliver(msg, min(granted, msg.qos), True, (ident,) if ident else ())


def handle_unsubscribe(conn: Connection, packet: Unsubscribe) -> None:
    session = conn.session
    assert session is not None
    codes = []
    for key in packet.topic_filters:
        found = conn.node.broker.unsubscribe(session, key)
        codes.append(c.SUCCESS if found else c.NO_SUBSCRIPTION_EXISTED)
        conn.node.events.emit(session, "unsubscribe", topic=key)
    conn.write(encode(Unsuback(packet.packet_id, codes if conn.version == 5 else []), conn.version))
