"""Which gateway runs which relay, and the relay's two paths through the platform.

Ownership: every gateway joins the consumer group ``<prefix>relay-owners`` on the (empty)
``relays`` topic and runs the relays whose id hashes to a partition it was assigned
(:func:`partition_for`). A dead node's partitions move to the others when Kafka notices
(the group's session timeout); on revoke a node disconnects its relays first.

In: a relayed message is placed on a device (fixed, or by serial number) and published
through :meth:`GatewayNode.publish`, exactly like a device's own publish.
Out: the owner tails ``sluice.downlink`` and sends publishes aimed at a relayed device to
the broker, on the topic the relay's ``downlink_topic`` template gives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from sqlalchemy.exc import SQLAlchemyError

from sluice import bus, config, records
from sluice.bus import Record
from sluice.config import DeviceInfo
from sluice.settings import SluiceSettings
from sluice_gateway.acl import allowed_topic
from sluice_gateway.node import GatewayNode
from sluice_gateway.relay.client import RelayClient, RelayMessage
from sluice_gateway.relay.connect import forget_session
from sluice_gateway.relay.mapping import (
    Unmapped,
    downlink_topic,
    locate,
    partition_for,
    uses_serial,
)
from sluice_gateway.relay.model import RelayDefinition
from sluice_gateway.relay.repository import RelayRepository
from sluice_gateway.session import Message, Session

log = logging.getLogger("sluice.gateway.relay")

_CONFIG_EVENTS = (
    config.TOKEN_DELETED,
    config.DEVICE_CHANGED,
    config.DEVICE_DELETED,
    config.ACCOUNT_CHANGED,
    config.PLAN_CHANGED,
)


@dataclass
class RelayOptions:
    status_every: float = 1.0  # a relay's status is written at most this often…
    heartbeat_every: float = 15.0  # …and at least this often (the API flags silent owners)
    reconcile_every: float = 30.0  # full reload from SQL, should a control event be missed
    revoke_drain: float = 1.0  # seconds a revoked relay may finish acknowledging


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, manager: RelayManager) -> None:
        self.manager = manager

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.manager.revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.manager.assigned(assigned)


class RelayManager:
    def __init__(
        self,
        node: GatewayNode,
        settings: SluiceSettings,
        topics: records.TopicNames,
        options: RelayOptions | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.topics = topics
        self.options = options or RelayOptions()
        self.repo = RelayRepository(node.store.sessions, ttl=settings.control_cache_ttl)
        self.relays: dict[str, RelayClient] = {}
        self.partitions: frozenset[int] = frozenset()
        self.partition_count = 0
        self.consumer = bus.make_group_consumer(
            settings, [topics.relays], f"{topics.prefix}relay-owners"
        )
        self._sessions: dict[tuple[str, str], Session] = {}
        self._requested: set[str] | None = set()  # relay ids to reload; None: all of them
        self._deleted: set[str] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._running = asyncio.Event()  # set once a relay runs here: start reading downlink
        self._stopped = False
        self._background: set[asyncio.Task[None]] = set()
        node.store.listeners.append(self.on_control)

    # -- ownership ----------------------------------------------------------------
    def owns(self, relay_id: str) -> bool:
        count = self.partition_count
        return count > 0 and partition_for(relay_id, count) in self.partitions

    def assigned(self, assigned: list[TopicPartition]) -> None:
        self.partitions = frozenset(tp.partition for tp in assigned)
        self.partition_count = len(self.consumer.partitions_for_topic(self.topics.relays) or ())
        log.info(
            "relay partitions assigned",
            extra={"partitions": sorted(self.partitions), "of": self.partition_count},
        )
        self.request(None)

    async def revoked(self) -> None:
        """Disconnect every relay before another node may connect it (eager rebalance)."""
        self.partitions = frozenset()
        running = list(self.relays)
        await asyncio.gather(*(self._stop_relay(rid) for rid in running))
        if running:
            log.info("relays handed back", extra={"relays": len(running)})

    def request(self, relay_id: str | None) -> None:
        """Reload one relay (or all) from SQL soon."""
        if relay_id is None:
            self._requested = None
        elif self._requested is not None:
            self._requested.add(relay_id)
        self._wake.set()

    def on_control(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == config.RELAY_CHANGED:
            relay_id = str(event.get("relay", ""))
            if event.get("deleted"):
                self._deleted.add(relay_id)
            self.request(relay_id)
        elif kind in _CONFIG_EVENTS:
            self.repo.forget_serials()
            self._sessions.clear()
            if kind in (config.ACCOUNT_CHANGED, config.PLAN_CHANGED):
                self.request(None)  # an account switched off, a plan's packet size changed

    # -- life cycle ---------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.consumer.subscribe([self.topics.relays], listener=_Ownership(self))
        try:
            await bus.start_with_retry(self.consumer, "relay ownership", stop)
            if self.topics.relays not in await self.consumer.topics():
                log.error(
                    "topic %s is missing: no relay runs until it exists (run `sluice topics`)",
                    self.topics.relays,
                )
        except KafkaError:
            return  # stopping before Kafka ever answered
        await asyncio.gather(
            self._keep_membership(stop),
            self._reconcile_loop(stop),
            self._write_status(stop),
            self._follow_downlink(stop),
        )

    async def stop(self) -> None:
        """Disconnect every relay (their brokers keep queueing for the next owner)."""
        if self._stopped:
            return
        self._stopped = True
        self.partitions = frozenset()
        await asyncio.gather(*(self._stop_relay(rid) for rid in list(self.relays)))
        try:
            await self.consumer.stop()
        except KafkaError as exc:
            log.debug("relay ownership consumer stop: %s", exc)

    async def _keep_membership(self, stop: asyncio.Event) -> None:
        """Nothing is ever read; polling keeps this node in the group."""
        while not stop.is_set():
            try:
                await self.consumer.getmany(timeout_ms=1000)
            except ConsumerStoppedError:
                return  # stop() left the group
            except KafkaError as exc:
                log.warning("relay ownership poll failed: %s", exc)
                await _sleep(stop, 1.0)

    async def _reconcile_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            woken = asyncio.ensure_future(self._wake.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                [woken, stopping],
                timeout=self.options.reconcile_every,
                return_when=asyncio.FIRST_COMPLETED,
            )
            woken.cancel()
            stopping.cancel()
            if stop.is_set():
                return
            if not self._wake.is_set():
                self._requested = None  # the periodic full reload
            self._wake.clear()
            wanted, self._requested = self._requested, set()
            try:
                await self._reconcile(wanted)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("relay definitions not readable; retrying: %s", exc)
                self.request(None)
                await _sleep(stop, 2.0)

    async def _reconcile(self, ids: set[str] | None) -> None:
        if ids is not None and not ids:
            return
        async with self._lock:
            if ids is None:
                definitions = {d.id: d for d in await self.repo.definitions()}
                ids = set(definitions) | set(self.relays)
            else:
                definitions = {}
                for relay_id in ids:
                    for d in await self.repo.definitions(relay_id):
                        definitions[d.id] = d
            for relay_id in sorted(ids):
                definition = definitions.get(relay_id)
                if definition is not None and self.owns(relay_id) and not self._stopped:
                    await self._ensure(definition)
                elif relay_id in self.relays:
                    client = self.relays[relay_id]
                    await self._stop_relay(relay_id)
                    if relay_id in self._deleted:  # leave nothing queued on the broker
                        task = asyncio.get_running_loop().create_task(
                            forget_session(client.definition)
                        )
                        self._background.add(task)
                        task.add_done_callback(self._background.discard)
                self._deleted.discard(relay_id)

    async def _ensure(self, definition: RelayDefinition) -> None:
        current = self.relays.get(definition.id)
        stale: frozenset[str] = frozenset()
        if current is not None:
            if current.definition == definition:
                return
            if current.definition.connection() == definition.connection():
                current.update(definition)
                return
            stale = current.definition.filters
            await current.stop(self.options.revoke_drain)
            stats = current.stats
        else:
            stats = await self.repo.load_stats(definition.id)
        if not self.owns(definition.id) or self._stopped:  # revoked meanwhile
            self.relays.pop(definition.id, None)
            return
        client = RelayClient(definition, stats, self._ingest, stale_filters=stale)
        self.relays[definition.id] = client
        client.start()
        self._running.set()
        log.info(
            "relay started",
            extra={
                "relay": definition.id,
                "account": definition.account_id,
                "node": self.node.node_id,
            },
        )

    async def _stop_relay(self, relay_id: str) -> None:
        client = self.relays.pop(relay_id, None)
        if client is not None:
            await client.stop(self.options.revoke_drain)
            log.info("relay stopped", extra={"relay": relay_id})

    # -- status -------------------------------------------------------------------
    async def _write_status(self, stop: asyncio.Event) -> None:
        node_id = self.node.node_id
        while not stop.is_set():
            await _sleep(stop, self.options.status_every)
            now = time.monotonic()
            for relay_id, client in list(self.relays.items()):
                stats = client.stats
                if not stats.dirty and now - stats.written_at < self.options.heartbeat_every:
                    continue
                stats.written_at = now
                try:
                    await self.repo.save_stats(relay_id, node_id, stats)
                except (SQLAlchemyError, OSError) as exc:
                    stats.written_at = 0.0
                    log.warning("relay status not written: %s", exc, extra={"relay": relay_id})

    # -- in: broker → sluice.uplink -----------------------------------------------
    async def _ingest(
        self, relay: RelayDefinition, message: RelayMessage, done: Callable[[], None]
    ) -> str | None:
        topic, payload = message.topic, message.payload
        if topic.startswith("$"):
            return f"topic {topic!r}: topics starting with '$' are reserved"
        if len(payload) > relay.max_payload:
            return (
                f"payload of {len(payload)} bytes on {topic!r} is over the plan's "
                f"max_packet_size ({relay.max_payload})"
            )
        try:
            located = locate(relay.mapping, topic, payload)
        except Unmapped as exc:
            return str(exc)
        device_id = located.device
        if device_id is None:
            serial = located.serial or ""
            device_id = await self.repo.device_for_serial(relay.account_id, serial)
            if device_id is None:
                return f"no device token has serie_number {serial!r} in this account ({topic!r})"
        device = await self.node.store.device(device_id)
        if device is None or device.account_id != relay.account_id:
            return f"device {device_id} not found in this account"
        if not device.active:
            return f"device {device_id} is inactive"
        if device.topic_acl and not allowed_topic(device.topic_acl, device_id, "publish", topic):
            return f"the topic ACL of device {device_id} denies publishing to {topic!r}"
        session = self._session(relay, device)
        refusal = self.node.quotas.publish(session, topic)  # as if the device had published
        if refusal is not None:
            return f"{refusal[0]} ({topic!r}, device {device_id})"
        # Kafka is behind: wait, as device sockets do (the uplink's one pressure callback
        # belongs to the node, so the flag is polled).
        while self.node.uplink.paused:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self.node.publish(session, Message(topic, payload, message.qos), done)
        return None

    def _session(self, relay: RelayDefinition, device: DeviceInfo) -> Session:
        """A detached session standing for the device (it shapes the record's envelope)."""
        key = (relay.id, device.id)
        session = self._sessions.get(key)
        if session is None:
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            session = Session(
                account=relay.account_id,
                client_id=f"relay:{relay.id}",
                device_id=device.id,
                token_hash="",
                permission="write",
                acl=device.topic_acl,
            )
            self._sessions[key] = session
        session.limits = relay.limits  # the plan may have changed since the session was made
        return session

    # -- out: sluice.downlink → broker --------------------------------------------
    async def _follow_downlink(self, stop: asyncio.Event) -> None:
        """Read platform publishes from the moment a relay first runs on this node."""
        waiter = asyncio.ensure_future(self._running.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
        if stop.is_set():
            return
        tail = bus.Tail(self.settings, [self.topics.downlink])
        try:
            await tail.start(stop)
        except KafkaError:
            return
        try:
            async for batch in tail.batches(stop):
                for record in batch:
                    await self._downlink(record)
        finally:
            await tail.stop()

    async def _downlink(self, record: Record) -> None:
        h = dict(record.headers)
        account = h.get("account", b"").decode()
        targets = [
            c
            for c in self.relays.values()
            if c.definition.account_id == account and c.definition.downlink_topic is not None
        ]
        if not targets:
            return
        device = h.get("device", b"").decode()
        topic = h.get("topic", b"").decode()
        qos = min(max(int(h.get("qos", b"0") or 0), 0), 2)
        retain = h.get("retain") == b"1"
        for client in targets:
            relay = client.definition
            if relay.mapping.type == "device" and relay.mapping.device != device:
                continue
            serial = None
            try:
                if relay.mapping.type != "device" or uses_serial(relay.downlink_topic):
                    serial = await self.repo.serial_of(account, device)
            except (SQLAlchemyError, OSError) as exc:
                client.stats.drop(f"downlink for device {device} dropped: {type(exc).__name__}")
                continue
            if relay.mapping.type != "device" and serial is None:
                continue  # a device without a serial number is not one this relay maps
            try:
                external = downlink_topic(
                    relay.downlink_topic or "", topic=topic, device=device, serial=serial
                )
            except Unmapped as exc:
                client.stats.drop(str(exc))
                continue
            client.publish(external, record.value or b"", qos, retain)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
