"""MQTT 5 details and timers, on a gateway with short timeouts of its own: keepalive ×1.5,
CONNECT timeout, server keep alive, receive maximum both ways, topic aliases both ways,
maximum packet size both ways, shared subscriptions, will delay, ACLs, DUP redelivery."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from sqlalchemy import update

from sluice.db import create_engine
from sluice.db.models import Device
from sluice.embedded import free_port
from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack
from sluice_gateway import codec as c
from sluice_gateway.codec import (
    Connack,
    Connect,
    Disconnect,
    Properties,
    Puback,
    Publish,
    StreamDecoder,
    Subscribe,
    Subscription,
    encode,
)
from sluice_gateway.codec.datatypes import encode_varint


@pytest.fixture(scope="module")
def strict(sqlite_stack: Stack) -> Iterator[int]:
    """A gateway with a 1 s CONNECT timeout, 2 s server keep alive and receive maximum 5."""
    port = free_port()
    sqlite_stack.add(
        "gateway-strict",
        SLUICE_MQTT_PORT=str(port),
        SLUICE_WS_PORT=str(free_port()),
        SLUICE_CONNECT_TIMEOUT="1",
        SLUICE_SERVER_KEEPALIVE="2",
        SLUICE_RECEIVE_MAXIMUM="5",
        SLUICE_NODE_ID=f"strict-{uuid.uuid4().hex[:4]}",
    ).start()
    sqlite_stack.wait_ready(["gateway-strict"])
    yield port
    sqlite_stack.processes.pop("gateway-strict").stop()


@pytest.fixture
def dev(sqlite_stack: Stack) -> dict[str, Any]:
    account = sqlite_stack.create_account(f"m5-{uuid.uuid4().hex[:6]}")
    device = sqlite_stack.create_device(account["token"], name="m5")
    return {"account": account, **device}


class Raw:
    """A hand-driven MQTT connection for what client libraries refuse to do."""

    def __init__(self, port: int, version: int = 5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.decoder = StreamDecoder(protocol_level=version)
        self.version = version
        self.pending: list[Any] = []

    def send(self, *packets: Any) -> None:
        self.sock.sendall(b"".join(encode(p, self.version) for p in packets))

    def recv(self, timeout: float = 5) -> Any:
        """The next packet, or None when the server closed the connection."""
        self.sock.settimeout(timeout)
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def login(self, token: str, client_id: str = "", **kw: Any) -> Connack:
        self.send(
            Connect(
                self.version,
                client_id or f"raw-{uuid.uuid4().hex[:6]}",
                username="Token",
                password=token.encode(),
                **kw,
            )
        )
        ack = self.recv()
        assert isinstance(ack, Connack)
        return ack

    def close(self) -> None:
        self.sock.close()


def test_connect_timeout_closes_a_silent_socket(strict: int) -> None:
    raw = Raw(strict)
    started = time.monotonic()
    assert raw.recv(timeout=10) is None
    assert time.monotonic() - started < 5


def test_keepalive_one_and_a_half_times_then_will(
    sqlite_stack: Stack, strict: int, dev: dict[str, Any]
) -> None:
    watcher = Client(strict, dev["token"], version=5)
    assert watcher.connect() == 0
    watcher.subscribe("ka/#", qos=1)
    raw = Raw(strict)
    ack = raw.login(dev["token"], keepalive=1, will=c.Will("ka/lost", b"timed out", 1))
    assert ack.reason_code == 0
    started = time.monotonic()
    closing = raw.recv(timeout=10)
    assert isinstance(closing, Disconnect)
    assert closing.reason_code == c.KEEP_ALIVE_TIMEOUT
    assert time.monotonic() - started >= 1.4
    assert watcher.expect().payload == b"timed out"  # a server-side disconnect sends the will


def test_server_keep_alive_caps_the_client_keepalive(strict: int, dev: dict[str, Any]) -> None:
    raw = Raw(strict)
    ack = raw.login(dev["token"], keepalive=600)
    assert ack.properties is not None
    assert ack.properties.server_keep_alive == 2
    raw.close()


def test_receive_maximum_is_advertised_and_enforced(strict: int, dev: dict[str, Any]) -> None:
    raw = Raw(strict)
    ack = raw.login(dev["token"])
    assert ack.properties is not None
    assert ack.properties.receive_maximum == 5
    # Six QoS 2 publishes without waiting: one more than allowed before any PUBREC.
    raw.send(*(Publish(f"rm/{n}", b"x", 2, packet_id=n + 1) for n in range(6)))
    seen = []
    while (packet := raw.recv()) is not None:
        seen.append(packet)
        if isinstance(packet, Disconnect):
            break
    assert isinstance(seen[-1], Disconnect), seen
    assert seen[-1].reason_code == c.RECEIVE_MAXIMUM_EXCEEDED


def test_client_receive_maximum_bounds_what_the_gateway_sends(
    sqlite_stack: Stack, dev: dict[str, Any]
) -> None:
    raw = Raw(sqlite_stack.mqtt_port)
    raw.login(dev["token"], properties=Properties(receive_maximum=2))
    raw.send(Subscribe(1, [Subscription("win/#", 1)]))
    assert isinstance(raw.recv(), c.Suback)
    pub = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert pub.connect() == 0
    for n in range(5):
        pub.publish(f"win/{n}", str(n), qos=1)
    first = [raw.recv(), raw.recv()]
    assert all(isinstance(p, Publish) for p in first)
    with pytest.raises(TimeoutError):
        raw.recv(timeout=1)  # a third copy waits for an acknowledgement
    raw.send(Puback(first[0].packet_id))
    third = raw.recv()
    assert isinstance(third, Publish)
    assert third.payload == b"2"


def test_topic_aliases_both_ways(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    sub = Raw(sqlite_stack.mqtt_port)
    sub.login(dev["token"], properties=Properties(topic_alias_maximum=4))
    sub.send(Subscribe(1, [Subscription("alias/#", 0)]))
    assert isinstance(sub.recv(), c.Suback)
    pub = Raw(sqlite_stack.mqtt_port)
    ack = pub.login(dev["token"])
    assert ack.properties is not None
    assert (ack.properties.topic_alias_maximum or 0) >= 1
    # Client → server: set alias 1, then publish with the alias only.
    pub.send(
        Publish("alias/long/topic/name", b"one", 0, properties=Properties(topic_alias=1)),
        Publish("", b"two", 0, properties=Properties(topic_alias=1)),
    )
    first, second = sub.recv(), sub.recv()
    # Server → client: the first copy sets the alias, the second uses it with an empty topic.
    assert (first.topic, first.payload, first.properties.topic_alias) == (
        "alias/long/topic/name",
        b"one",
        1,
    )
    assert (second.topic, second.payload, second.properties.topic_alias) == ("", b"two", 1)
    pub.send(Publish("", b"three", 0, properties=Properties(topic_alias=3)))  # never set
    closing = pub.recv()
    assert isinstance(closing, Disconnect)
    assert closing.reason_code == c.PROTOCOL_ERROR


def test_maximum_packet_size_both_ways(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    small = Raw(sqlite_stack.mqtt_port)
    ack = small.login(dev["token"], properties=Properties(maximum_packet_size=64))
    assert ack.properties is not None
    limit = ack.properties.maximum_packet_size
    assert limit == 256 * 1024
    small.send(Subscribe(1, [Subscription("size/#", 0)]))
    assert isinstance(small.recv(), c.Suback)
    pub = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert pub.connect() == 0
    pub.publish("size/big", b"x" * 200, qos=1)  # too big for this client: not sent to it
    pub.publish("size/ok", b"y", qos=1)
    got = small.recv()
    assert (got.topic, got.payload) == ("size/ok", b"y")
    # A packet over the gateway's limit is refused before it is buffered whole.
    small.sock.sendall(bytes([0x30]) + encode_varint(limit + 10))
    closing = small.recv()
    assert isinstance(closing, Disconnect)
    assert closing.reason_code == c.PACKET_TOO_LARGE


def test_shared_subscription_spreads_messages(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    workers = [Client(sqlite_stack.mqtt_port, dev["token"], version=5) for _ in range(2)]
    for w in workers:
        assert w.connect() == 0
        assert w.subscribe("$share/pool/jobs/#", qos=1) == [1]
    pub = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert pub.connect() == 0
    for n in range(10):
        pub.publish(f"jobs/{n}", str(n), qos=1)
    time.sleep(1.0)
    counts = [w.messages.qsize() for w in workers]
    assert sum(counts) == 10  # each message to exactly one member
    assert all(counts), counts


def test_will_delay_is_cancelled_by_a_quick_reconnect(
    sqlite_stack: Stack, dev: dict[str, Any]
) -> None:
    watcher = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert watcher.connect() == 0
    watcher.subscribe("delayed/#", qos=1)
    raw = Raw(sqlite_stack.mqtt_port)
    will = c.Will("delayed/will", b"late", 1, properties=Properties(will_delay_interval=3))
    raw.login(
        dev["token"],
        client_id="delayer",
        will=will,
        properties=Properties(session_expiry_interval=60),
    )
    raw.close()
    back = Raw(sqlite_stack.mqtt_port)
    assert back.login(dev["token"], client_id="delayer", clean_start=False).session_present
    watcher.expect_none(4.0)  # the session went on: the first connection's will is dropped
    back.close()

    gone = Raw(sqlite_stack.mqtt_port)
    will = c.Will("delayed/will", b"gone for good", 1, properties=Properties(will_delay_interval=1))
    gone.login(
        dev["token"],
        client_id="leaver",
        will=will,
        properties=Properties(session_expiry_interval=60),
    )
    gone.close()
    watcher.expect_none(0.5)  # not before its delay
    assert watcher.expect(timeout=10).payload == b"gone for good"


def test_unsubscribe_reason_codes(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    raw = Raw(sqlite_stack.mqtt_port)
    raw.login(dev["token"])
    raw.send(Subscribe(1, [Subscription("u/#", 0)]))
    assert isinstance(raw.recv(), c.Suback)
    raw.send(c.Unsubscribe(2, ["u/#", "never/subscribed"]))
    ack = raw.recv()
    assert isinstance(ack, c.Unsuback)
    assert ack.reason_codes == [c.SUCCESS, c.NO_SUBSCRIPTION_EXISTED]


def test_invalid_filter_and_no_local_on_shared(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    raw = Raw(sqlite_stack.mqtt_port)
    raw.login(dev["token"])
    raw.send(Subscribe(1, [Subscription("a/#/b", 0), Subscription("ok/+", 1)]))
    ack = raw.recv()
    assert ack.reason_codes == [c.TOPIC_FILTER_INVALID, 1]
    raw.send(Subscribe(2, [Subscription("$share/g/x", 0, no_local=True)]))
    closing = raw.recv()
    assert isinstance(closing, Disconnect)
    assert closing.reason_code == c.PROTOCOL_ERROR


def test_inflight_qos1_is_redelivered_with_dup_after_reconnect(
    sqlite_stack: Stack, dev: dict[str, Any]
) -> None:
    first = Raw(sqlite_stack.mqtt_port)
    first.login(
        dev["token"], client_id="forgetful", properties=Properties(session_expiry_interval=60)
    )
    first.send(Subscribe(1, [Subscription("dup/#", 1)]))
    assert isinstance(first.recv(), c.Suback)
    pub = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert pub.connect() == 0
    pub.publish("dup/1", "again", qos=1)
    original = first.recv()
    assert isinstance(original, Publish)
    assert not original.dup
    first.close()  # never acknowledged
    second = Raw(sqlite_stack.mqtt_port)
    assert second.login(dev["token"], client_id="forgetful", clean_start=False).session_present
    resent = second.recv()
    assert isinstance(resent, Publish)
    assert (resent.dup, resent.packet_id, resent.payload) == (True, original.packet_id, b"again")


def test_qos2_resend_is_forwarded_once(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    watcher = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert watcher.connect() == 0
    watcher.subscribe("once/#", qos=2)
    raw = Raw(sqlite_stack.mqtt_port)
    raw.login(dev["token"])
    raw.send(Publish("once/x", b"exactly", 2, packet_id=42))
    assert isinstance(raw.recv(), c.Pubrec)
    raw.send(
        Publish("once/x", b"exactly", 2, dup=True, packet_id=42)
    )  # the client never saw PUBREC
    assert isinstance(raw.recv(), c.Pubrec)
    raw.send(c.Pubrel(42))
    assert isinstance(raw.recv(), c.Pubcomp)
    assert watcher.expect().payload == b"exactly"
    watcher.expect_none(1.0)


RESENDS_ABSORBED = "sluice_gateway_qos1_resends_absorbed_total"


@pytest.mark.parametrize("version", [4, 5])
def test_qos1_resend_of_a_publish_the_gateway_holds_is_stored_once(
    sqlite_stack: Stack, dev: dict[str, Any], version: int
) -> None:
    """The connection drops before the PUBACK; the client resends (DUP) on its next one.

    The gateway still holds the message (Kafka had not answered, or answered while no
    connection could carry the PUBACK), so the resend gets the PUBACK and is not stored or
    forwarded again. After that PUBACK the packet id names a new message (MQTT 4.3.2).
    """
    watcher = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert watcher.connect() == 0
    watcher.subscribe("held/#", qos=1)
    client_id = f"held-{uuid.uuid4().hex[:6]}"
    keep = Properties(session_expiry_interval=300) if version == 5 else None
    first = Raw(sqlite_stack.mqtt_port, version)
    first.login(dev["token"], client_id, clean_start=False, properties=keep)
    first.send(Publish("held/x", b"once", 1, packet_id=7))
    first.close()  # gone before Kafka's acknowledgement could become a PUBACK

    second = Raw(sqlite_stack.mqtt_port, version)
    assert second.login(dev["token"], client_id, clean_start=False, properties=keep).session_present
    second.send(Publish("held/x", b"once", 1, dup=True, packet_id=7))
    ack = second.recv()
    assert isinstance(ack, c.Puback), ack
    assert ack.packet_id == 7
    assert watcher.expect().payload == b"once"
    watcher.expect_none(1.0)

    second.send(Publish("held/x", b"again", 1, packet_id=7))  # acknowledged: a new message
    ack = second.recv()
    assert isinstance(ack, c.Puback), ack
    assert ack.packet_id == 7
    assert watcher.expect().payload == b"again"
    second.close()
    url = sqlite_stack.processes["gateway"].health_url.replace("/readyz", "/metrics")
    metrics = httpx.get(url, timeout=10).text
    absorbed = [line for line in metrics.splitlines() if line.startswith(RESENDS_ABSORBED)]
    assert absorbed, metrics
    assert float(absorbed[0].split()[-1]) >= 1, absorbed


def test_device_topic_acl(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    account = dev["account"]
    acl = [
        {"action": "allow", "access": "publish", "topic": "devices/{device}/#"},
        {"action": "allow", "access": "subscribe", "topic": "commands/{device}/#"},
    ]
    limited = sqlite_stack.create_device(account["token"], name="acl")

    async def set_acl() -> None:
        engine = create_engine(sqlite_stack.database_url)
        async with engine.begin() as conn:
            await conn.execute(
                update(Device).where(Device.id == limited["device_id"]).values(topic_acl=acl)
            )
        await engine.dispose()

    asyncio.run(set_acl())
    client = Client(sqlite_stack.mqtt_port, limited["token"], version=5)
    assert client.connect() == 0
    assert client.publish(f"devices/{limited['device_id']}/temp", "1", qos=1) == 0
    assert client.publish("devices/someone-else/temp", "1", qos=1) == c.NOT_AUTHORIZED
    assert client.subscribe(f"commands/{limited['device_id']}/#", qos=1) == [1]
    assert client.subscribe("#", qos=1) == [c.NOT_AUTHORIZED]


def test_aiomqtt_client(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    import aiomqtt

    async def scenario() -> bytes:
        async with aiomqtt.Client(
            "127.0.0.1",
            sqlite_stack.mqtt_port,
            username="Token",
            password=dev["token"],
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            await client.subscribe("aio/#", qos=1)
            await client.publish("aio/1", b"async", qos=1)
            async for message in client.messages:
                return bytes(message.payload)  # type: ignore[arg-type]
        return b""

    assert asyncio.run(asyncio.wait_for(scenario(), 15)) == b"async"


def test_request_response_properties_pass_through(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    responder = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert responder.connect() == 0
    responder.subscribe("rpc/request", qos=1)
    requester = Client(sqlite_stack.mqtt_port, dev["token"], version=5)
    assert requester.connect() == 0
    requester.subscribe("rpc/reply/me", qos=1)
    props = PahoProperties(PacketTypes.PUBLISH)
    props.ResponseTopic = "rpc/reply/me"
    props.CorrelationData = b"req-7"
    requester.publish("rpc/request", "ping", qos=1, properties=props)
    request = responder.expect()
    reply = PahoProperties(PacketTypes.PUBLISH)
    reply.CorrelationData = request.properties.CorrelationData
    responder.publish(request.properties.ResponseTopic, "pong", qos=1, properties=reply)
    answer = requester.expect()
    assert (answer.payload, answer.properties.CorrelationData) == (b"pong", b"req-7")


def inspector_events(stack: Stack, device_id: str) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer

    from sluice import records

    async def read() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            stack.topic_prefix + "inspector",
            bootstrap_servers=stack.kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            events: list[dict[str, Any]] = []
            batch = await consumer.getmany(timeout_ms=2000)
            while batch:
                for recs in batch.values():
                    events += [records.loads(r.value) for r in recs if r.key == device_id.encode()]
                batch = await consumer.getmany(timeout_ms=300)
            return events
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_live_inspector_events(sqlite_stack: Stack, dev: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaProducer

    from sluice import config, records

    client = Client(sqlite_stack.mqtt_port, dev["token"], version=5, client_id="inspected")
    assert client.connect() == 0
    client.subscribe("seen/#", qos=1)

    async def watch() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=sqlite_stack.kafka_bootstrap)
        await producer.start()
        event = config.control_event(
            "inspector.watch", device=dev["device_id"], until=records.now_ms() + 60_000
        )
        await producer.send_and_wait(sqlite_stack.topic_prefix + "control", event)
        await producer.stop()

    asyncio.run(watch())
    time.sleep(0.5)
    client.publish("seen/1", '{"variable":"t","value":1}', qos=1)
    client.disconnect()
    Client(sqlite_stack.mqtt_port, "wrong-token", version=5).connect()

    def kinds() -> list[str]:
        return [e["type"] for e in inspector_events(sqlite_stack, dev["device_id"])]

    from sluice.testing.mqtt import wait_for

    wait_for(lambda: "disconnect" in kinds(), what="the disconnect event")
    events = inspector_events(sqlite_stack, dev["device_id"])
    by_type = {e["type"]: e for e in events}
    assert by_type["connect"]["client_id"] == "inspected"
    assert by_type["connect"]["protocol"] == "5.0"
    assert by_type["connect"]["address"].startswith("127.0.0.1:")
    assert by_type["subscribe"]["topic"] == "seen/#"
    assert by_type["publish"]["topic"] == "seen/1"
    assert by_type["publish"]["preview"] == '{"variable":"t","value":1}'
    assert by_type["disconnect"]["reason"].startswith("client disconnected")
    assert all(e["account"] == dev["account"]["id"] for e in events)
