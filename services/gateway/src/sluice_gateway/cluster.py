"""What a gateway learns from Kafka: other nodes' publishes, platform publishes to devices,
retained messages, and control events (revocations, takeovers, inspector watches).

Every node reads these topics whole, without a consumer group. Delivery stays behind
``ClusterFeed``, so replacing "read everything" with per-node routing later replaces this
module, not the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from sluice import bus, config, records
from sluice.bus import Record
from sluice_gateway import codec as c
from sluice_gateway.node import GatewayNode
from sluice_gateway.propcodec import props_from_header
from sluice_gateway.session import Message, Session

log = logging.getLogger("sluice.gateway.cluster")

SESSION_CONNECTED = "session.connected"


def _headers(record: Record) -> dict[str, bytes]:
    return dict(record.headers)


def message_from_record(record: Record, h: dict[str, bytes]) -> Message:
    props, expires = props_from_header(h.get("props"))
    return Message(
        h.get("topic", b"").decode(),
        record.value or b"",
        int(h.get("qos", b"0") or 0),
        h.get("retain") == b"1",
        props,
        expires,
    )


class ClusterFeed:
    def __init__(self, node: GatewayNode, settings: Any, topics: records.TopicNames) -> None:
        self.node = node
        self.topics = topics
        self.live = bus.Tail(settings, [topics.uplink, topics.downlink, topics.control])
        self.retained = bus.Tail(settings, [topics.retained], from_beginning=True)
        self.remote_delivered = 0
        self.reading_uplink = True
        self.uplink_ends: dict[TopicPartition, int] = {}
        node.store.listeners.append(self.on_control)
        node.broker.on_interest = self.follow_uplink

    async def start(self, stop: asyncio.Event) -> None:
        await self.live.start(stop)
        await self.retained.start(stop)
        await self._load_retained(stop)
        self.uplink_ends = await self.live.consumer.end_offsets(self._uplink_partitions())
        self.follow_uplink(self.node.broker.subscription_count > 0)

    def follow_uplink(self, interested: bool) -> None:
        """Read other nodes' publishes only while this node has subscriptions.

        A node without subscribers would decode every message of the cluster (its own
        included) for nothing. When the first subscription arrives, reading resumes
        from the end: messages published before a subscription existed are not due to it.
        """
        if interested == self.reading_uplink:
            return
        self.reading_uplink = interested
        consumer = self.live.consumer
        partitions = self._uplink_partitions()
        if not interested:
            consumer.pause(*partitions)
            return
        # Resume at once from the ends last seen while paused (at most ~0.5 s old); the
        # records in between are older than the subscription and filtered by time.
        self.live.not_before = records.now_ms() - 1000
        for tp in partitions:
            end = self.uplink_ends.get(tp)
            if end is not None:
                consumer.seek(tp, end)
        consumer.resume(*partitions)

    def _uplink_partitions(self) -> list[TopicPartition]:
        return [tp for tp in self.live.consumer.assignment() if tp.topic == self.topics.uplink]

    async def _track_uplink_ends(self, stop: asyncio.Event) -> None:
        """While paused, remember where the uplink ends, so resuming needs no round trip."""
        while not stop.is_set():
            if not self.reading_uplink:
                try:
                    self.uplink_ends = await self.live.consumer.end_offsets(
                        self._uplink_partitions()
                    )
                except KafkaError as exc:
                    log.debug("could not read uplink end offsets: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                pass

    async def _load_retained(self, stop: asyncio.Event) -> None:
        """Read the retained topic up to its end before clients arrive."""
        ends = await self.retained.end_offsets()
        consumer = self.retained.consumer
        remaining = {tp for tp, end in ends.items() if end > 0}
        loaded = 0
        while remaining and not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for recs in batch.values():
                for record in recs:
                    self.apply_retained(record)
                    loaded += 1
            for tp in list(remaining):
                if await consumer.position(TopicPartition(tp.topic, tp.partition)) >= ends[tp]:
                    remaining.discard(tp)
        log.info("loaded %d retained records", loaded)

    def apply_retained(self, record: Record) -> None:
        h = _headers(record)
        account = h.get("account", b"").decode()
        if not account:
            return
        msg = message_from_record(record, h)
        msg.retain = True
        self.node.broker.set_retained(account, msg)

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(
            self._run_live(stop), self._run_retained(stop), self._track_uplink_ends(stop)
        )

    async def _run_retained(self, stop: asyncio.Event) -> None:
        own = self.node.origin
        async for batch in self.retained.batches(stop):
            for record in batch:
                # This node set its own retained messages when they were published; applying
                # them again as they come back from Kafka could undo a newer local change (a
                # clear arriving before the record of the value it cleared).
                if records.header(record.headers, "origin") == own:
                    continue
                self.apply_retained(record)

    async def _run_live(self, stop: asyncio.Event) -> None:
        own = self.node.origin
        uplink, downlink = self.topics.uplink, self.topics.downlink
        async for batch in self.live.batches(stop):
            for record in batch:
                h = _headers(record)
                if record.topic == uplink:
                    if h.get("origin") == own:
                        continue
                    account = h.get("account", b"").decode()
                    self.node.deliver_remote(account, message_from_record(record, h))
                    self.remote_delivered += 1
                elif record.topic == downlink:
                    account = h.get("account", b"").decode()
                    device = h.get("device", b"").decode()
                    self.node.deliver_remote(account, message_from_record(record, h), device)
                else:
                    await self._control(record)
            for conn in list(self.node.connections):
                if conn.out and not conn.flush_pending:
                    conn.flush()

    async def _control(self, record: Record) -> None:
        try:
            event = records.loads(record.value)
        except ValueError:
            return
        if isinstance(event, dict):
            await self.node.store.apply(event)

    async def on_control(self, event: dict[str, Any]) -> None:
        """React to a control event (the config cache has already dropped stale entries)."""
        kind = event.get("type")
        node = self.node
        if kind == config.TOKEN_DELETED:
            token_hash = event.get("token_hash")
            node.disconnect_where(
                lambda s: s.token_hash == token_hash, "device token revoked", c.NOT_AUTHORIZED
            )
        elif kind == config.DEVICE_DELETED:
            device = event.get("device")
            node.disconnect_where(
                lambda s: s.device_id == device, "device deleted", c.ADMINISTRATIVE_ACTION
            )
        elif kind == config.DEVICE_CHANGED:
            await self._recheck_device(str(event.get("device", "")))
        elif kind == config.PLAN_CHANGED:
            await node.refresh_limits()
        elif kind == config.ACCOUNT_CHANGED:
            account = str(event.get("account", ""))
            await node.refresh_limits(account)
            if event.get("active") is False:
                node.disconnect_where(
                    lambda s: s.account == account, "account disabled", c.ADMINISTRATIVE_ACTION
                )
        elif kind == SESSION_CONNECTED and event.get("node") != node.node_id:
            owner, client_id = event.get("account"), event.get("client_id")
            at = int(event.get("at", 0))
            # Only sessions older than the announcing one: events can arrive late.
            node.disconnect_where(
                lambda s: s.account == owner and s.client_id == client_id and s.connected_at < at,
                "session taken over on another gateway",
                c.SESSION_TAKEN_OVER,
            )
        elif kind == config.INSPECTOR_WATCH:
            node.events.watches.apply(event)

    async def _recheck_device(self, device_id: str) -> None:
        sessions = [s for s in self.node.broker.sessions() if s.device_id == device_id]
        if not sessions:
            return
        device = await self.node.store.device(device_id)
        if device is None or not device.active:
            self.node.disconnect_where(
                lambda s: s.device_id == device_id, "device deactivated", c.ADMINISTRATIVE_ACTION
            )
            return
        for session in sessions:
            session.acl = device.topic_acl

    async def stop(self) -> None:
        await self.live.stop()
        await self.retained.stop()


def session_connected_event(node: GatewayNode, session: Session) -> bytes:
    return config.control_event(
        SESSION_CONNECTED, account=session.account, client_id=session.client_id, node=node.node_id
    )
