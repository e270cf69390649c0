"""Composition root of the gateway: Kafka clients, node, listeners, background loops."""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from typing import Any

from aiokafka.errors import KafkaError

from sluice import bus, records
from sluice.config import ConfigStore
from sluice.db import create_engine, session_factory
from sluice.limits import connect_redis
from sluice.service import database_check, start_health
from sluice_gateway import gwmetrics
from sluice_gateway.cluster import ClusterFeed, session_connected_event
from sluice_gateway.connection import Connection
from sluice_gateway.events import EventSink
from sluice_gateway.node import GatewayNode
from sluice_gateway.propcodec import props_header
from sluice_gateway.relay import create_relays
from sluice_gateway.session import Message, Session
from sluice_gateway.settings import GatewaySettings
from sluice_gateway.uplink import UplinkProducer
from sluice_gateway.websocket import WebSocketProtocol

log = logging.getLogger("sluice.gateway")


class PortInUse(RuntimeError):
    pass


async def listen(
    loop: asyncio.AbstractEventLoop,
    factory: Any,
    host: str,
    port: int,
    knob: str,
    label: str,
    **kw: Any,
) -> asyncio.Server:
    try:
        server = await loop.create_server(factory, host, port, backlog=4096, **kw)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{label} port {port} is already in use; set {knob} to a free port"
            ) from None
        raise
    log.info("%s listening on %s:%d", label, host, port)
    return server


def tls_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    if not (settings.tls_cert and settings.tls_key):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


async def serve(settings: GatewaySettings, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    topics = records.TopicNames(settings.topic_prefix)
    engine = create_engine(settings.database_url)
    store = ConfigStore(session_factory(engine), settings.control_cache_ttl)
    producer = bus.make_producer(settings)
    await bus.start_with_retry(producer, "gateway producer", stop)
    events = EventSink(producer, topics.inspector)
    background: set[asyncio.Task[Any]] = set()

    async def send_quietly(
        topic: str, value: bytes | None, key: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        while True:
            try:
                await producer.send_and_wait(topic, value, key=key, headers=headers)
                return
            except KafkaError as exc:
                log.warning("retrying %s record: %s", topic, exc)
                await asyncio.sleep(1)

    def spawn(coro: Any) -> None:
        task = loop.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    def retain(account: str, device: str, msg: Message) -> None:
        headers = [
            ("account", account.encode()),
            ("topic", msg.topic.encode()),
            ("qos", b"%d" % msg.qos),
            ("device", device.encode()),
            ("origin", settings.node_id.encode()),
        ]
        if msg.props is not None or msg.expires_at is not None:
            headers.append(("props", props_header(msg)))
        spawn(
            send_quietly(topics.retained, msg.payload, f"{account}/{msg.topic}".encode(), headers)
        )

    uplink = UplinkProducer(producer, topics.uplink, max_pending=settings.max_node_inflight)
    redis = connect_redis(settings.redis_url)
    node = GatewayNode(settings, store, uplink, events, retain, loop, redis)
    uplink.on_pressure = node.pressure

    def announce(session: Session) -> None:
        spawn(
            send_quietly(
                topics.control, session_connected_event(node, session), session.account.encode(), []
            )
        )

    node.on_session_connected = announce
    gwmetrics.register(node)
    feed = ClusterFeed(node, settings, topics)
    await feed.start(stop)
    relays = create_relays(node, settings, topics)  # MQTT relay: docs/relay.md

    reuse = settings.reuse_port
    servers = [
        await listen(
            loop,
            lambda: Connection(node, "tcp"),
            settings.mqtt_host,
            settings.mqtt_port,
            "SLUICE_MQTT_PORT",
            "MQTT",
            reuse_port=reuse,
        ),
        await listen(
            loop,
            lambda: WebSocketProtocol(node, settings.ws_path),
            settings.mqtt_host,
            settings.ws_port,
            "SLUICE_WS_PORT",
            "MQTT over WebSocket",
            reuse_port=reuse,
        ),
    ]
    context = tls_context(settings)
    if context is not None:
        servers.append(
            await listen(
                loop,
                lambda: Connection(node, "tls"),
                settings.mqtt_host,
                settings.mqtts_port,
                "SLUICE_MQTTS_PORT",
                "MQTT over TLS",
                ssl=context,
                reuse_port=reuse,
            )
        )

    async def kafka_check() -> str | None:
        await producer.client.fetch_all_metadata()
        return None

    health = await start_health(
        settings, {"database": database_check(engine), "kafka": kafka_check}
    )
    uplink_stop = asyncio.Event()
    loops = [
        loop.create_task(uplink.run(uplink_stop)),
        loop.create_task(feed.run(stop)),
        loop.create_task(node.run_timers(stop)),
        loop.create_task(events.run(uplink_stop)),
        loop.create_task(node.quotas.counter.run(stop)),
        loop.create_task(node.quotas.gauges.run(stop)),
        loop.create_task(relays.run(stop)),
    ]
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        await relays.stop()
        await node.shutdown()
        uplink_stop.set()
        await asyncio.gather(*loops, return_exceptions=True)
        for task in list(background):
            task.cancel()
        await feed.stop()
        await producer.stop()
        if health:
            await health.stop()
        await engine.dispose()
        if redis is not None:
            await redis.aclose()
