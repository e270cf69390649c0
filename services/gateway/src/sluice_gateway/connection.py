"""One client connection: the MQTT protocol state machine over an asyncio transport.

Bytes in → codec → packet handlers → session/node; bytes out are gathered in a list and
written with one ``writelines`` per loop iteration. TCP, TLS and WebSocket listeners all
drive this class (WebSocket through a framing adapter with the same transport methods).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sluice_gateway import codec as c
from sluice_gateway.codec import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    ProtocolError,
    Publish,
    StreamDecoder,
    Subscribe,
    Unsubscribe,
    encode,
    encode_ack,
)
from sluice_gateway.outbound import OutboundAliases, encode_delivery, forwardable
from sluice_gateway.session import HeldPublish, Message, Session
from sluice_gateway.subscribing import handle_subscribe, handle_unsubscribe

if TYPE_CHECKING:
    from sluice_gateway.node import GatewayNode, Will

log = logging.getLogger("sluice.gateway")

NEW, AUTHENTICATING, CONNECTED, CLOSED = range(4)
PINGRESP = b"\xd0\x00"
MAX_EXPIRY = 0xFFFFFFFF


class Connection(asyncio.Protocol):
    def __init__(self, node: GatewayNode, listener: str) -> None:
        self.node = node
        self.listener = listener
        self.state = NEW
        self.transport: Any = None
        self.peer = ""
        self.decoder = StreamDecoder(node.default_max_packet)
        self.version = 4
        self.session: Session | None = None
        self.client_id = ""
        self.keepalive = 0
        self.opened = time.monotonic()
        self.last_rx = self.opened
        self.expire_at: float | None = None  # token expiry, wall clock
        self.will: Will | None = None
        self.receive_maximum = 65535  # the client's: our QoS 1/2 sends in flight to it
        self.client_max_packet = 0
        self.aliases = OutboundAliases()
        self.aliases_in: dict[int, str] = {}
        self.unacked = 0  # the client's publishes waiting for Kafka
        self.inflight_limit = node.settings.receive_maximum
        self.paused_for: set[str] = set()
        self.out: list[bytes] = []
        self.flush_pending = False
        self.backlog: list[bytes] = []
        self.close_reason = "connection lost"
        self.normal_disconnect = False
        self.session_expiry_from_connect = 0
        self.ip = ""
        self.admitted_account: str | None = None  # counted in the account's connections

    # -- transport callbacks --------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self.ip = peer[0] if isinstance(peer, tuple) else self.peer
        quotas = self.node.quotas
        if quotas.ip_full(self.ip):
            transport.close()  # refused before a byte is read: floods cost nothing
            return
        quotas.opened(self.ip)
        self.node.connections.add(self)
        if self.node.reading_paused:
            self.pause("node")

    def data_received(self, data: bytes) -> None:
        if self.state == CLOSED:
            return
        self.last_rx = time.monotonic()
        if self.state == AUTHENTICATING:
            self.backlog.append(data)
            return
        if self.state == NEW and data[:1] not in (b"\x10", b"") and not self.decoder.buffered:
            # Not MQTT (an HTTP request, TLS on the plain port, noise): do not wait for more.
            self.close("the first packet is not CONNECT")
            return
        try:
            packets = self.decoder.feed(data)
        except ProtocolError as error:
            self._handle_packets(error.packets)
            if self.state != CLOSED:
                self.protocol_error(error)
            self.flush()
            return
        self._handle_packets(packets)
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        self.state = CLOSED
        self.node.connection_closed(self, was == CONNECTED)

    def pause_writing(self) -> None:  # the transport's buffer is full: QoS 0 is dropped
        pass

    def resume_writing(self) -> None:
        pass

    # -- packet dispatch ------------------------------------------------------------
    def _handle_packets(self, packets: Sequence[c.Packet], start: int = 0) -> None:
        for index in range(start, len(packets)):
            packet = packets[index]
            if self.state == NEW:
                if type(packet) is not Connect:
                    self.close("first packet was not CONNECT")
                    return
                self.state = AUTHENTICATING
                self.pause("auth")
                rest = list(packets[index + 1 :])
                self.node.spawn(self._connect(packet, rest))
                return
            if isinstance(packet, Publish):
                self.on_publish(packet)
            elif isinstance(packet, c.Puback):
                if self.session is not None:
                    self.session.on_puback(packet.packet_id)
            elif isinstance(packet, c.Pubrec):
                if self.session is not None:
                    self.session.on_pubrec(packet.packet_id, packet.reason_code)
            elif isinstance(packet, c.Pubrel):
                self.on_pubrel(packet)
            elif isinstance(packet, c.Pubcomp):
                if self.session is not None:
                    self.session.on_pubcomp(packet.packet_id)
            elif isinstance(packet, c.Pingreq):
                self.write(PINGRESP)
            elif isinstance(packet, Subscribe):
                self.on_subscribe(packet)
            elif isinstance(packet, Unsubscribe):
                self.on_unsubscribe(packet)
            elif isinstance(packet, Disconnect):
                self.on_disconnect(packet)
            elif isinstance(packet, Connect):
                self.close("second CONNECT", c.PROTOCOL_ERROR)
            elif isinstance(packet, c.Auth):
                self.close("enhanced authentication is not supported", c.BAD_AUTHENTICATION_METHOD)
            else:
                name = type(packet).__name__.upper()
                self.close(f"a client may not send {name}", c.PROTOCOL_ERROR)
            if self.state == CLOSED:
                return

    # -- CONNECT --------------------------------------------------------------------
    async def _connect(self, packet: Connect, rest: list[c.Packet]) -> None:
        try:
            accepted = await self.node.accept(self, packet)
        except Exception:
            log.exception("CONNECT handling failed", extra={"peer": self.peer})
            accepted = False
            self.refuse(c.CONNACK_SERVER_UNAVAILABLE, c.SERVER_UNAVAILABLE, "internal error")
        if not accepted or self.state == CLOSED:
            return
        self.state = CONNECTED
        self.resume("auth")
        self._handle_packets(rest)
        backlog, self.backlog = self.backlog, []
        for chunk in backlog:
            if self.state == CLOSED:
                break
            self.data_received(chunk)
        self.flush()

    def refuse(self, code_v3: int, code_v5: int, reason: str) -> None:
        """Answer CONNECT with a refusal and close."""
        code = code_v5 if self.version == 5 else code_v3
        log.info("connect refused", extra={"peer": self.peer, "code": code, "reason": reason})
        props = Properties(reason_string=reason) if self.version == 5 else None
        self.write(encode(Connack(False, code, props), self.version))
        self.close(f"connect refused: {reason}")

    # -- PUBLISH from the client ----------------------------------------------------
    def on_publish(self, packet: Publish) -> None:
        session = self.session
        assert session is not None
        topic = packet.topic
        props = packet.properties
        if props is not None and props.topic_alias is not None:
            alias = props.topic_alias
            if alias == 0 or alias > self.node.settings.topic_alias_maximum:
                self.close(f"topic alias {alias} is out of range", c.TOPIC_ALIAS_INVALID)
                return
            if topic:
                self.aliases_in[alias] = topic
            else:
                known = self.aliases_in.get(alias)
                if known is None:
                    self.close(f"topic alias {alias} was never set", c.PROTOCOL_ERROR)
                    return
                topic = known
        qos = packet.qos
        if qos:
            if qos == 1:
                held = session.incoming_qos1.get(packet.packet_id)  # type: ignore[arg-type]
                if held is not None and packet.dup and held.digest == hash((topic, packet.payload)):
                    self._resent(session, packet.packet_id, held)  # type: ignore[arg-type]
                    return
            elif qos == 2:
                stored = session.incoming_qos2.get(packet.packet_id)  # type: ignore[arg-type]
                if stored is not None:
                    # A resend of a QoS 2 publish we already have: acknowledge, never forward twice.
                    if stored:
                        self.write(encode_ack(c.PUBREC, packet.packet_id, self.version))  # type: ignore[arg-type]
                    return
            self.unacked += 1
            if self.unacked > self.inflight_limit:
                if self.version == 5:
                    self.close(
                        "more unacknowledged publishes than Receive Maximum",
                        c.RECEIVE_MAXIMUM_EXCEEDED,
                    )
                    return
                self.pause("inflight")
        refusal = self.node.check_publish(self, session, topic, packet)
        if refusal is not None:
            if qos:
                self.unacked -= 1
            self.refuse_publish(packet, *refusal)
            return
        forwarded, expires = forwardable(props)
        msg = Message(topic, packet.payload, qos, packet.retain, forwarded, expires)
        if qos == 0:
            self.node.publish(session, msg, None)
            return
        packet_id = packet.packet_id
        assert packet_id is not None
        if qos == 2:
            session.incoming_qos2[packet_id] = False
            self.node.publish(session, msg, lambda: self._stored(session, packet_id, qos))
            return
        held = session.incoming_qos1[packet_id] = HeldPublish(hash((topic, packet.payload)))
        self.node.publish(session, msg, lambda: self._stored(session, packet_id, qos, held))

    def _resent(self, session: Session, packet_id: int, held: HeldPublish) -> None:
        """The client resent a QoS 1 publish the gateway still holds: never store it twice."""
        self.node.stats["resends_absorbed"] += 1
        if held.state == HeldPublish.STORED:
            del session.incoming_qos1[packet_id]
            self.write(encode_ack(c.PUBACK, packet_id, self.version))
        else:
            held.state = HeldPublish.RESENT  # acknowledged here once Kafka has it

    def _stored(
        self, session: Session, packet_id: int, qos: int, held: HeldPublish | None = None
    ) -> None:
        """Kafka has the record: now, and only now, acknowledge it."""
        self.unacked -= 1
        if "inflight" in self.paused_for and self.unacked < self.inflight_limit // 2:
            self.resume("inflight")
        if qos == 1:
            mine = held is not None and session.incoming_qos1.get(packet_id) is held
            if self.state == CONNECTED:
                if mine:
                    del session.incoming_qos1[packet_id]
                self.write_soon(encode_ack(c.PUBACK, packet_id, self.version))
            elif mine and held is not None:
                link = session.link
                if (
                    held.state == HeldPublish.RESENT
                    and isinstance(link, Connection)
                    and link.state == CONNECTED
                ):
                    del session.incoming_qos1[packet_id]
                    link.write_soon(encode_ack(c.PUBACK, packet_id, link.version))
                    return
                held.state = HeldPublish.STORED  # the client's resend gets the PUBACK
            return
        if packet_id in session.incoming_qos2:
            session.incoming_qos2[packet_id] = True
            link = session.link
            if isinstance(link, Connection) and link.state == CONNECTED:
                link.write_soon(encode_ack(c.PUBREC, packet_id, link.version))

    def refuse_publish(self, packet: Publish, reason: str, code: int) -> None:
        """Refuse one publish: a reason code on MQTT 5, a closed connection on 3.x."""
        self.node.stats["refused"] += 1
        self.node.events.emit(
            self.session,
            "publish_refused",
            topic=packet.topic,
            qos=packet.qos,
            reason=reason,
            code=code,
        )
        if packet.qos == 0 and code in (c.MESSAGE_RATE_TOO_HIGH, c.QUOTA_EXCEEDED):
            return  # QoS 0 over a limit is dropped and counted, on every protocol version
        if self.version == 5 and packet.qos:
            kind = c.PUBACK if packet.qos == 1 else c.PUBREC
            self.write(encode_ack(kind, packet.packet_id, 5, code))  # type: ignore[arg-type]
        else:
            self.close(f"publish refused: {reason}", code)

    def on_pubrel(self, packet: c.Pubrel) -> None:
        session = self.session
        assert session is not None
        known = session.incoming_qos2.pop(packet.packet_id, None)
        code = c.PACKET_IDENTIFIER_NOT_FOUND if known is None and self.version == 5 else 0
        self.write(encode_ack(c.PUBCOMP, packet.packet_id, self.version, code))

    # -- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------
    def on_subscribe(self, packet: Subscribe) -> None:
        handle_subscribe(self, packet)

    def on_unsubscribe(self, packet: Unsubscribe) -> None:
        handle_unsubscribe(self, packet)

    # -- DISCONNECT -----------------------------------------------------------------
    def on_disconnect(self, packet: Disconnect) -> None:
        session = self.session
        props = packet.properties
        if props is not None and props.session_expiry_interval is not None and session is not None:
            if self.session_expiry_from_connect == 0 and props.session_expiry_interval > 0:
                self.close("session expiry set on DISCONNECT after 0 on CONNECT", c.PROTOCOL_ERROR)
                return
            session.expiry = self.node.cap_expiry(props.session_expiry_interval)
        # 0x04 (disconnect with will message) keeps the will; every other reason discards it.
        self.normal_disconnect = packet.reason_code != c.DISCONNECT_WITH_WILL
        self.close(f"client disconnected (reason 0x{packet.reason_code:02x})")

    # -- output ---------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.out.append(data)

    def write_soon(self, data: bytes) -> None:
        """Write from outside a read callback: flushed once at the end of this loop turn."""
        self.out.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            self.node.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_pending = False
        if self.out and self.transport is not None:
            out, self.out = self.out, []
            if self.state != CLOSED or not self.transport.is_closing():
                self.transport.writelines(out)

    def congested(self) -> bool:
        return bool(self.transport.get_write_buffer_size() > self.node.settings.write_buffer_limit)

    def send_publish(
        self,
        msg: Message,
        qos: int,
        retain: bool,
        sub_ids: Sequence[int],
        packet_id: int | None,
        dup: bool,
    ) -> bool:
        """Link method: encode one delivery for this client (aliases, ids, expiry on 5.0)."""
        data = encode_delivery(
            self.version, msg, qos, retain, sub_ids, packet_id, dup, self.aliases
        )
        if self.client_max_packet and len(data) > self.client_max_packet:
            return False  # the client said it cannot take it: dropped for this client
        self.out.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            self.node.loop.call_soon(self.flush)
        return True

    def send_pubrel(self, packet_id: int) -> None:
        self.write_soon(encode_ack(c.PUBREL, packet_id, self.version))

    # -- flow control and closing -----------------------------------------------------
    def pause(self, why: str) -> None:
        if not self.paused_for and self.transport is not None:
            self.transport.pause_reading()
        self.paused_for.add(why)

    def resume(self, why: str) -> None:
        self.paused_for.discard(why)
        if not self.paused_for and self.transport is not None and self.state != CLOSED:
            self.transport.resume_reading()

    def protocol_error(self, error: ProtocolError) -> None:
        if isinstance(error, c.UnsupportedProtocolVersion) and self.state == NEW:
            self.version = 5 if error.protocol_level == 5 else 4
            self.refuse(
                c.CONNACK_UNACCEPTABLE_PROTOCOL_VERSION, c.UNSUPPORTED_PROTOCOL_VERSION, str(error)
            )
            return
        if self.state == NEW and self.decoder.protocol_level == 5:
            # A bad CONNECT from an MQTT 5 client is answered with a CONNACK reason code.
            self.version = 5
            self.refuse(c.CONNACK_SERVER_UNAVAILABLE, error.reason_code, str(error))
            return
        self.close(f"protocol error: {error}", error.reason_code)

    def close(self, reason: str, code: int | None = None) -> None:
        """Close the connection; on MQTT 5 tell the client why with a DISCONNECT first."""
        if self.state == CLOSED:
            return
        if code is not None and self.version == 5 and self.state == CONNECTED:
            props = Properties(reason_string=reason[:200])
            self.write(encode(Disconnect(code, props), 5))
        self.close_reason = reason
        was_connected = self.state == CONNECTED
        self.state = CLOSED
        self.flush()
        if self.transport is not None:
            self.transport.close()
        self.node.connection_closed(self, was_connected)
