"""One relay's connection to a third-party broker, with gmqtt.

The relay keeps a persistent session (clean session off, a long MQTT 5 session expiry), so
the broker queues QoS 1/2 messages while no gateway holds the relay. A QoS 1/2 message is
acknowledged to the broker only once Kafka has it, in the order it arrived: until then the
broker redelivers it (after a broker restart, a lost connection or a takeover), so nothing
the broker accepted is lost; a redelivery can duplicate (at least once).

gmqtt's own reconnect loop is switched off: each attempt gets a fresh client, the relay
waits with backoff between attempts and subscribes again on every connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import gmqtt
from gmqtt.mqtt.handler import MQTTConnectError

from sluice_gateway.relay.connect import (
    GMQTT_LOG,
    GmqttClient,
    close,
    describe_disconnect,
    describe_refusal,
    tls_context,
)
from sluice_gateway.relay.mapping import Backoff, EchoFilter
from sluice_gateway.relay.model import (
    SESSION_EXPIRY,
    STATE_CONNECTED,
    STATE_CONNECTING,
    STATE_DISCONNECTED,
    STATE_ERROR,
    RelayDefinition,
    RelayStats,
)

log = logging.getLogger("sluice.gateway.relay")

RECEIVE_MAXIMUM = 100  # QoS 1/2 messages the broker may have in flight to us (MQTT 5)


@dataclass(slots=True)
class RelayMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool


# (relay, message, done) -> None when the message went to Kafka (``done()`` runs once Kafka
# has it), else why it was refused; raising means "try again later" (database down).
Ingest = Callable[[RelayDefinition, RelayMessage, Callable[[], None]], Awaitable[str | None]]


class RelayClient:
    def __init__(
        self,
        definition: RelayDefinition,
        stats: RelayStats,
        ingest: Ingest,
        *,
        stale_filters: frozenset[str] = frozenset(),
        connect_timeout: float = 15.0,
        backoff: Backoff | None = None,
        max_inbox: int = 10_000,
        max_outbox: int = 1_000,
    ) -> None:
        self.definition = definition
        self.stats = stats
        self.ingest = ingest
        self.stale_filters = stale_filters - definition.filters
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self.max_inbox = max_inbox
        self.max_outbox = max_outbox
        self.echo = EchoFilter()
        self._client: GmqttClient | None = None
        self._tls: ssl.SSLContext | None = None
        self._inbox: asyncio.Queue[tuple[RelayMessage, asyncio.Future[None]]] = asyncio.Queue()
        self._outbox: deque[tuple[str, bytes, int, bool]] = deque()
        self._unstored: set[asyncio.Future[None]] = set()  # QoS 1/2 not yet in Kafka
        self._acking: set[asyncio.Task[Any]] = set()  # gmqtt tasks that acknowledge on return
        self.lost_reason = ""
        self._refusals_logged_at = 0.0
        self._refusals_unlogged = 0
        self._last_ack: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None

    @property
    def ids(self) -> dict[str, str]:
        return {"relay": self.definition.id, "account": self.definition.account_id}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def update(self, definition: RelayDefinition) -> None:
        """Take a definition whose connection settings are unchanged (mapping, downlink…)."""
        self.definition = definition

    async def stop(self, drain: float = 1.0) -> None:
        """Disconnect; what Kafka acknowledged within ``drain`` seconds is acknowledged first."""
        self._stop.set()
        if self._acking and self._client is not None:
            # gmqtt sends the PUBACK from a done-callback that runs before this wait returns.
            await asyncio.wait(list(self._acking), timeout=drain)
        client, self._client = self._client, None
        if client is not None:
            await close(client)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        # The socket is closed: these acknowledgements go nowhere and the broker redelivers.
        for future in list(self._unstored):
            if not future.done():
                future.set_result(None)
        self._unstored.clear()

    # -- connection ---------------------------------------------------------------
    async def _run(self) -> None:
        worker = asyncio.get_running_loop().create_task(self._work())
        try:
            while not self._stop.is_set():
                await self._connect_once()
                if self._stop.is_set():
                    break
                try:
                    await asyncio.wait_for(self._stop.wait(), self.backoff.next())
                except TimeoutError:
                    pass
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    def _new_client(self, lost: asyncio.Event) -> GmqttClient:
        d = self.definition
        props: dict[str, Any] = {}
        if d.version == 5:
            props = {"session_expiry_interval": SESSION_EXPIRY, "receive_maximum": RECEIVE_MAXIMUM}
        client = GmqttClient(
            d.client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            logger=GMQTT_LOG,
            **props,
        )
        if d.username is not None:
            client.set_auth_credentials(d.username, d.password)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = lambda _client, packet, exc=None: self._lost(lost, packet)
        return client

    def _lost(self, lost: asyncio.Event, packet: Any) -> None:
        if not lost.is_set():
            self.lost_reason = describe_disconnect(packet)
            lost.set()

    async def _connect_once(self) -> None:
        d = self.definition
        where = f"{d.host}:{d.port}"
        self.stats.set_state(STATE_CONNECTING)
        lost = asyncio.Event()
        self.lost_reason = ""
        try:
            if d.tls is not None and self._tls is None:
                self._tls = tls_context(d.tls)
        except (ssl.SSLError, ValueError, OSError) as exc:
            self._fail(f"the relay's TLS settings are unusable: {exc}")
            return
        client = self._new_client(lost)
        try:
            await asyncio.wait_for(
                client.connect(
                    d.host, d.port, ssl=self._tls or False, keepalive=d.keepalive, version=d.version
                ),
                self.connect_timeout,
            )
        except asyncio.CancelledError:
            await close(client)  # stopped while connecting: leave no half-open session
            raise
        except MQTTConnectError as exc:
            self._fail(describe_refusal(exc))
        except TimeoutError:
            if d.version == 5 and client.downgraded:
                self._fail("the broker does not speak MQTT 5.0: set the relay's version to 3.1.1")
            else:
                self._fail(f"no answer to CONNECT from {where} within {self.connect_timeout:g} s")
        except ssl.SSLError as exc:
            self._fail(f"TLS handshake with {where} failed: {exc}")
        except OSError as exc:
            self._fail(f"cannot reach {where}: {exc.strerror or exc}")
        else:
            await self._connected(client, lost)
            return
        await close(client)

    def _fail(self, why: str) -> None:
        self.stats.error(why, STATE_ERROR)
        log.warning("relay cannot connect", extra={**self.ids, "error": why})

    async def _connected(self, client: GmqttClient, lost: asyncio.Event) -> None:
        d = self.definition
        since = time.monotonic()
        self._client = client
        self._last_ack = None
        self.stats.set_state(STATE_CONNECTED)
        log.info("relay connected", extra={**self.ids, "host": d.host, "port": d.port})
        if self.stale_filters:
            client.unsubscribe(sorted(self.stale_filters))
            self.stale_filters = frozenset()
        v5 = d.version == 5
        if d.subscriptions:
            client.subscribe(
                [
                    # 5.0: no echo of our own publishes; retained ones only for a new filter.
                    gmqtt.Subscription(
                        s.filter, qos=s.qos, no_local=v5, retain_handling_options=1 if v5 else 0
                    )
                    for s in d.subscriptions
                ]
            )
        self._flush()
        stop = asyncio.ensure_future(self._stop.wait())
        gone = asyncio.ensure_future(lost.wait())
        await asyncio.wait([stop, gone], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        gone.cancel()
        if self._stop.is_set():
            return  # stop() closes the client after draining
        self._client = None
        self.backoff.connection_ended(time.monotonic() - since)
        self.stats.error(self.lost_reason or "connection to the broker lost", STATE_DISCONNECTED)
        log.warning("relay disconnected", extra={**self.ids, "error": self.lost_reason})
        await close(client)

    def _on_subscribe(self, _client: Any, _mid: int, granted: Any, _props: Any) -> None:
        for sub, code in zip(self.definition.subscriptions, granted or (), strict=False):
            if code >= 0x80:
                self.stats.error(
                    f"the broker refused the subscription to {sub.filter!r} (code {code:#x}): "
                    "check this user's ACL on the broker"
                )
                log.warning("relay subscription refused", extra={**self.ids, "filter": sub.filter})

    # -- messages from the broker -------------------------------------------------
    async def _on_message(
        self, _client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        """gmqtt acknowledges a QoS 1/2 message when this coroutine returns."""
        retain = bool(properties.get("retain"))
        if retain and not self.definition.ingest_retained:
            return 0  # a stored retained message, replayed because we subscribed: old state
        if self.definition.version != 5 and self.echo.is_echo(topic, payload):
            return 0
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[None] = loop.create_future()
        message = RelayMessage(topic, payload, qos, retain)
        if qos == 0:
            if self._inbox.qsize() >= self.max_inbox:
                self.stats.drop("QoS 0 message dropped: the relay is behind (is Kafka slow?)")
            else:
                self._inbox.put_nowait((message, stored))
            return 0
        previous, mine = self._last_ack, loop.create_future()
        self._last_ack = mine
        task = asyncio.current_task()
        if task is not None:
            self._acking.add(task)
            task.add_done_callback(self._acking.discard)
        self._unstored.add(stored)
        self._inbox.put_nowait((message, stored))
        try:
            await stored
            if previous is not None and not previous.done():
                await asyncio.shield(previous)  # acknowledge in arrival order
        finally:
            self._unstored.discard(stored)
            if not mine.done():
                mine.set_result(None)
        return 0

    async def _work(self) -> None:
        """Hand messages on one at a time, so a device's messages keep their order."""
        while True:
            message, stored = await self._inbox.get()

            def done(stored: asyncio.Future[None] = stored) -> None:
                if not stored.done():
                    stored.set_result(None)

            delay = 0.5
            while True:
                try:
                    why = await self.ingest(self.definition, message, done)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database is away: never acknowledge unstored
                    self.stats.error(f"cannot place messages ({type(exc).__name__}); retrying")
                    log.warning("relay ingest failed; retrying", extra={**self.ids}, exc_info=exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            if why is None:
                self.stats.received()
            else:
                self.stats.drop(why)
                self._log_refusal(message.topic, why)
                done()

    def _log_refusal(self, topic: str, why: str) -> None:
        """At most one line per 10 s: a misrouted feed must not flood the gateway's log."""
        self._refusals_unlogged += 1
        now = time.monotonic()
        if now - self._refusals_logged_at < 10.0:
            return
        log.info(
            "relayed message refused",
            extra={**self.ids, "topic": topic, "reason": why, "count": self._refusals_unlogged},
        )
        self._refusals_logged_at = now
        self._refusals_unlogged = 0

    # -- platform publishes to the broker -----------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Send a platform publish; QoS 1/2 wait (bounded) while the broker is away."""
        if self._client is None and qos == 0:
            self.stats.drop(f"downlink to {topic!r} dropped: not connected (QoS 0)")
            return
        self._outbox.append((topic, payload, qos, retain))
        if len(self._outbox) > self.max_outbox:
            dropped = self._outbox.popleft()
            self.stats.drop(f"downlink to {dropped[0]!r} dropped: {self.max_outbox} waiting")
        self._flush()

    def _flush(self) -> None:
        self._flush_handle = None
        client = self._client
        while client is not None and self._outbox:
            topic, payload, qos, retain = self._outbox[0]
            try:
                client.publish(topic, payload, qos=qos, retain=retain)
            except OverflowError:  # every packet id is in flight: try again shortly
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_later(0.1, self._flush)
                return
            self._outbox.popleft()
            if self.definition.version != 5:
                self.echo.sent(topic, payload)
            self.stats.sent()
