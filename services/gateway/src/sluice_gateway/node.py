"""One gateway process: authenticates clients, owns their sessions and talks to Kafka.

Local subscribers get a message the moment it arrives; other gateways get it through
``sluice.uplink`` (see cluster.py). QoS 1/2 acknowledgements wait for Kafka (uplink.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.config import ConfigStore, TokenInfo
from sluice.ids import hash_token
from sluice.plans import plan_limits
from sluice_gateway import codec as c
from sluice_gateway.acl import allowed_topic
from sluice_gateway.broker import Broker
from sluice_gateway.codec import Connack, Connect, Properties, Publish
from sluice_gateway.connection import AUTHENTICATING, CONNECTED, Connection
from sluice_gateway.events import EventSink
from sluice_gateway.outbound import forwardable
from sluice_gateway.propcodec import props_header
from sluice_gateway.quotas import Quotas
from sluice_gateway.session import Message, Session
from sluice_gateway.settings import GatewaySettings
from sluice_gateway.uplink import UplinkProducer

log = logging.getLogger("sluice.gateway")

QOS_HEADER = (b"0", b"1", b"2")


@dataclass(slots=True)
class Will:
    message: Message
    delay: int


@dataclass(slots=True)
class PendingWill:
    session: Session
    will: Will
    handle: asyncio.TimerHandle


class GatewayNode:
    def __init__(
        self,
        settings: GatewaySettings,
        store: ConfigStore,
        uplink: UplinkProducer,
        events: EventSink,
        retain_sink: Callable[[str, str, Message], None],
        loop: asyncio.AbstractEventLoop,
        redis: Any | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.uplink = uplink
        self.events = events
        self.retain_sink = retain_sink
        self.loop = loop
        self.broker = Broker()
        self.quotas = Quotas(settings, events, redis, settings.node_id)
        self.broker.admit = self._admit_delivery
        self.node_id = settings.node_id
        self.origin = settings.node_id.encode()
        self.connections: set[Connection] = set()
        self.reading_paused = False
        self.default_max_packet = 256 * 1024
        self._id_prefix = os.urandom(5).hex().encode()
        self._counter = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending_wills: dict[tuple[str, str], PendingWill] = {}
        self.on_session_connected: Callable[[Session], None] = lambda session: None
        self.stats = {
            "connects": 0,
            "auth_failures": 0,
            "published": 0,
            "refused": 0,
            "resends_absorbed": 0,
        }

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- authentication -------------------------------------------------------------
    async def authenticate(self, packet: Connect) -> tuple[TokenInfo | None, str]:
        """The token's identity, or None and why (username ``Token``/any + password = token)."""
        if packet.password:
            token = packet.password.decode("utf-8", "replace")
        elif packet.username:
            token = packet.username  # ThingsBoard/Ubidots style: the token as the username
        else:
            return None, "no token: send the device token as the password (username 'Token')"
        info = await self.store.token(hash_token(token.strip()))
        if info is None:
            return None, "invalid device token"
        if info.expired(datetime.now(UTC)):
            return None, "device token expired"
        if not info.device.active:
            return None, "device is inactive"
        return info, ""

    async def accept(self, conn: Connection, packet: Connect) -> bool:
        """Handle CONNECT: authenticate, pick or create the session, send CONNACK."""
        conn.version = packet.protocol_level if packet.protocol_level == 5 else 4
        ip = conn.ip
        v5 = conn.version == 5
        if self.quotas.throttled(ip):
            conn.refuse(
                c.CONNACK_NOT_AUTHORIZED, c.CONNECTION_RATE_EXCEEDED, "too many failed logins"
            )
            return False
        client_id = packet.client_id
        if not client_id and not packet.clean_start and not v5:
            conn.refuse(
                c.CONNACK_IDENTIFIER_REJECTED,
                c.CLIENT_IDENTIFIER_NOT_VALID,
                "a client id is required unless clean session is set",
            )
            return False
        info, why = await self.authenticate(packet)
        if info is None:
            self.quotas.auth_failed(ip)
            self.stats["auth_failures"] += 1
            self.events.emit_raw(
                "", "", "auth_failed", address=conn.peer, client_id=client_id, reason=why
            )
            if why.startswith("invalid") or why.startswith("no token"):
                conn.refuse(c.CONNACK_NOT_AUTHORIZED, c.BAD_USERNAME_OR_PASSWORD, why)
            else:
                conn.refuse(c.CONNACK_NOT_AUTHORIZED, c.NOT_AUTHORIZED, why)
            return False
        if conn.state != AUTHENTICATING:
            return False  # the socket went away while we looked the token up
        limits = plan_limits(info.limits, info.plan)
        refusal = self.quotas.admit(info.account_id, info.device_id, limits)
        if refusal is not None:
            conn.refuse(c.CONNACK_SERVER_UNAVAILABLE, refusal[1], refusal[0])
            return False
        conn.admitted_account = info.account_id
        props_in = packet.properties or Properties()
        assigned = None
        if not client_id:
            client_id = assigned = f"sluice-{os.urandom(8).hex()}"
        if v5:
            expiry = self.cap_expiry(props_in.session_expiry_interval or 0)
        else:
            expiry = 0 if packet.clean_start else self.settings.max_session_expiry
        conn.session_expiry_from_connect = expiry

        old = self.broker.find_session(info.account_id, client_id)
        if old is not None and old.link is not None:
            old_conn = old.link
            if isinstance(old_conn, Connection):
                old_conn.close("session taken over by a new connection", c.SESSION_TAKEN_OVER)
        session_present = False
        # A delayed will is dropped when the session goes on, and due when it ends here.
        self._cancel_will(info.account_id, client_id, send=packet.clean_start)
        if old is not None and (packet.clean_start or old.device_id != info.device_id):
            self.broker.remove_session(old)
            old = None
        if old is not None:
            session = old
            session_present = True
            session.token_hash = info.token_hash
            session.permission = info.permission
            session.acl = info.device.topic_acl
            session.expiry = expiry
        else:
            session = Session(
                account=info.account_id,
                client_id=client_id,
                device_id=info.device_id,
                token_hash=info.token_hash,
                permission=info.permission,
                acl=info.device.topic_acl,
                expiry=expiry,
                max_queue=self.settings.max_session_queue,
            )
            self.broker.add_session(session)

        session.limits = limits
        conn.client_id = client_id
        conn.session = session
        conn.keepalive = packet.keepalive
        server_keepalive = None
        limit = self.settings.server_keepalive
        if limit and (packet.keepalive == 0 or packet.keepalive > limit):
            conn.keepalive = server_keepalive = limit
        conn.expire_at = info.expire_at.timestamp() if info.expire_at else None
        max_packet = int(limits["max_packet_size"])
        conn.decoder.max_packet_size = max_packet
        conn.inflight_limit = min(self.settings.receive_maximum, int(limits["max_inflight"]))
        if v5:
            conn.receive_maximum = props_in.receive_maximum or 65535
            conn.client_max_packet = props_in.maximum_packet_size or 0
            conn.aliases.maximum = props_in.topic_alias_maximum or 0
        conn.will = self._will(packet, session, conn)
        ack_props = None
        if v5:
            ack_props = Properties(
                receive_maximum=conn.inflight_limit,
                maximum_packet_size=max_packet,
                topic_alias_maximum=self.settings.topic_alias_maximum,
                assigned_client_identifier=assigned,
                server_keep_alive=server_keepalive,
                shared_subscription_available=1,
                subscription_identifier_available=1,
                wildcard_subscription_available=1,
                retain_available=1,
            )
            if (
                props_in.session_expiry_interval is not None
                and expiry != props_in.session_expiry_interval
            ):
                ack_props.session_expiry_interval = expiry
        conn.write(c.encode(Connack(session_present, 0, ack_props), conn.version))
        self.stats["connects"] += 1
        session.attach(conn)
        self.on_session_connected(session)
        self.events.emit(
            session,
            "connect",
            client_id=client_id,
            protocol={3: "3.1", 4: "3.1.1", 5: "5.0"}[packet.protocol_level],
            address=conn.peer,
            listener=conn.listener,
            clean_start=packet.clean_start,
            session_present=session_present,
            keepalive=conn.keepalive,
        )
        return True

    def _will(self, packet: Connect, session: Session, conn: Connection) -> Will | None:
        will = packet.will
        if will is None:
            return None
        if not session.can_publish:
            self.events.emit(
                session, "will_ignored", topic=will.topic, reason="token may not publish"
            )
            return None
        props, expires = forwardable(will.properties)
        delay = (will.properties.will_delay_interval or 0) if will.properties else 0
        return Will(Message(will.topic, will.payload, will.qos, will.retain, props, expires), delay)

    def cap_expiry(self, requested: int) -> int:
        return min(requested, self.settings.max_session_expiry)

    def limit(self, session: Session, name: str) -> int:
        return int(session.limits.get(name) or plan_limits(None, "free")[name])

    def _admit_delivery(self, account: str, sessions: Collection[Session]) -> bool:
        limits = next(iter(sessions)).limits
        limit = int(limits.get("mqtt_subscribe_receive_per_min", 1 << 30))
        return self.quotas.deliver(account, len(sessions), limit)

    async def refresh_limits(self, account: str | None = None) -> None:
        """A plan or account changed: sessions take their new limits without reconnecting."""
        for session in list(self.broker.sessions()):
            if account is not None and session.account != account:
                continue
            info = await self.store.token(session.token_hash)
            if info is not None:
                session.limits = plan_limits(info.limits, info.plan)

    # -- publishing -----------------------------------------------------------------
    def check_publish(
        self, conn: Connection, session: Session, topic: str, packet: Publish
    ) -> tuple[str, int] | None:
        """Why this publish is refused (reason, MQTT 5 code), or None."""
        if not session.can_publish:
            return "this token may not publish (read permission)", c.NOT_AUTHORIZED
        if topic.startswith("$"):
            return "topics starting with '$' are reserved", c.NOT_AUTHORIZED
        if session.acl and not allowed_topic(session.acl, session.device_id, "publish", topic):
            return "the device's topic ACL denies this topic", c.NOT_AUTHORIZED
        refusal = self.quotas.publish(session, topic)
        if refusal is not None:
            return refusal
        props = packet.properties
        if props is not None and props.payload_format_indicator == 1:
            try:
                packet.payload.decode("utf-8")
            except UnicodeDecodeError:
                return (
                    "payload format indicator says UTF-8 but the payload is not",
                    c.PAYLOAD_FORMAT_INVALID,
                )
        return None

    def _static_headers(self, session: Session) -> list[tuple[str, bytes]]:
        headers = session.record_headers
        if headers is None:
            headers = session.record_headers = [
                ("account", session.account.encode()),
                ("device", session.device_id.encode()),
                ("origin", self.origin),
                ("schema", b"1"),
                ("client_id", session.client_id.encode()),
            ]
        return headers

    def publish(self, session: Session, msg: Message, done: Callable[[], None] | None) -> None:
        """A message from a local client (or its will): to Kafka, retained store, subscribers."""
        self._counter += 1
        headers = [
            ("message_id", b"%s%014x" % (self._id_prefix, self._counter)),
            ("topic", msg.topic.encode()),
            ("qos", QOS_HEADER[msg.qos]),
            ("received_at", b"%d" % (time.time_ns() // 1_000_000)),
            *self._static_headers(session),
        ]
        if msg.retain:
            headers.append(("retain", b"1"))
        if msg.props is not None or msg.expires_at is not None:
            headers.append(("props", props_header(msg)))
        self.uplink.submit(session.device_id.encode(), msg.payload, headers, done)
        self.stats["published"] += 1
        if msg.retain:
            self.broker.set_retained(session.account, msg)
            self.retain_sink(session.account, session.device_id, msg)
        self.broker.route(session.account, msg, origin=session)
        if self.events.watches(session.device_id):
            self.events.publish(session, msg)

    def pressure(self, paused: bool) -> None:
        """Kafka is behind (or back): stop (or resume) reading every socket."""
        self.reading_paused = paused
        for conn in self.connections:
            if paused:
                conn.pause("node")
            else:
                conn.resume("node")

    # -- disconnects, wills, timers -------------------------------------------------
    def connection_closed(self, conn: Connection, was_connected: bool) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.quotas.closed(conn.ip)
        if conn.admitted_account is not None:
            self.quotas.session_closed(conn.admitted_account)
            conn.admitted_account = None
        session = conn.session
        if session is None or session.link is not conn:
            return
        session.detach()
        self.events.emit(session, "disconnect", client_id=conn.client_id, reason=conn.close_reason)
        if conn.will is not None and not conn.normal_disconnect:
            self._schedule_will(session, conn.will)
        if session.expiry == 0:
            self.broker.remove_session(session)

    def _schedule_will(self, session: Session, will: Will) -> None:
        delay = min(will.delay, session.expiry) if will.delay else 0
        if delay <= 0:
            self._send_will(session, will)
            return
        key = (session.account, session.client_id)
        handle = self.loop.call_later(
            delay, self._cancel_will, session.account, session.client_id, True
        )
        self._pending_wills[key] = PendingWill(session, will, handle)

    def _cancel_will(self, account: str, client_id: str, send: bool = False) -> None:
        """A delayed will is dropped when its client reconnects in time, else sent."""
        pending = self._pending_wills.pop((account, client_id), None)
        if pending is None:
            return
        pending.handle.cancel()
        if send and pending.session.link is None:
            self._send_will(pending.session, pending.will)

    def _send_will(self, session: Session, will: Will) -> None:
        msg = will.message
        if session.acl and not allowed_topic(session.acl, session.device_id, "publish", msg.topic):
            return
        self.events.emit(session, "will", topic=msg.topic, qos=msg.qos, retain=msg.retain)
        self.publish(session, msg, None)

    def disconnect_where(self, predicate: Callable[[Session], bool], reason: str, code: int) -> int:
        """Close the connections (and drop the sessions) the predicate picks."""
        closed = 0
        for session in list(self.broker.sessions()):
            if not predicate(session):
                continue
            link = session.link
            if isinstance(link, Connection):
                link.close(reason, code)
                closed += 1
            self.broker.remove_session(session)
        return closed

    def tick(self) -> None:
        """Keepalive (×1.5), CONNECT timeout, token expiry, session expiry."""
        now = time.monotonic()
        wall = time.time()
        timeout = self.settings.connect_timeout
        for conn in list(self.connections):
            if conn.state == CONNECTED:
                if conn.keepalive and now - conn.last_rx > conn.keepalive * 1.5:
                    conn.close("keepalive timeout", c.KEEP_ALIVE_TIMEOUT)
                elif conn.expire_at is not None and wall >= conn.expire_at:
                    conn.close("device token expired", c.NOT_AUTHORIZED)
            elif now - conn.opened > timeout and conn.state != CONNECTED:
                conn.close("no CONNECT in time")
        for session in list(self.broker.sessions()):
            if session.link is None and session.expired(now):
                self._cancel_will(session.account, session.client_id, send=True)
                self.broker.remove_session(session)

    async def run_timers(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.tick()
            try:
                await asyncio.wait_for(stop.wait(), 0.25)
            except TimeoutError:
                pass

    # -- messages from elsewhere ----------------------------------------------------
    def deliver_remote(
        self, envelope_account: str, msg: Message, target_device: str | None = None
    ) -> None:
        self.broker.route(envelope_account, msg, None, target_device)

    async def shutdown(self) -> None:
        """Tell clients we are going (0x8B on 5.0), give Kafka a moment to ack in-flight work."""
        await self.uplink.drain(5.0)
        for conn in list(self.connections):
            conn.close("server shutting down", c.SERVER_SHUTTING_DOWN)
