"""Plan limits and abuse resistance at the MQTT edge, with two gateways sharing counts
through the local Redis. Accounts here use a custom plan with tiny limits."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from sluice import config
from sluice.db import create_engine
from sluice.embedded import free_port
from sluice.plans import DEFAULT_PLANS
from sluice.testing.mqtt import Client, wait_for
from sluice.testing.stack import Stack

REDIS_DB = 11
TINY = {
    **DEFAULT_PLANS["free"],
    "mqtt_connect_per_min": 1000,
    "mqtt_publish_per_min": 10,
    "mqtt_subscribe_receive_per_min": 3,
    "max_connections": 3,
    "max_subscriptions_per_connection": 2,
    "max_topic_length": 40,
    "max_topic_levels": 4,
}


def run_sql(stack: Stack, statement: str, **params: Any) -> None:
    async def go() -> None:
        engine = create_engine(stack.database_url)
        async with engine.begin() as conn:
            await conn.execute(text(statement), params)
        await engine.dispose()

    asyncio.run(go())


def save_plan(stack: Stack, name: str, limits: dict[str, Any]) -> None:
    import orjson

    run_sql(stack, "DELETE FROM plans WHERE name = :name", name=name)
    run_sql(
        stack,
        "INSERT INTO plans (name, limits, created_at, updated_at)"
        " VALUES (:name, :limits, :now, :now)",
        name=name,
        limits=orjson.dumps(limits).decode(),
        now="2026-01-01 00:00:00",
    )


def control(stack: Stack, kind: str, **fields: Any) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await producer.start()
        await producer.send_and_wait(
            stack.topic_prefix + "control", config.control_event(kind, **fields)
        )
        await producer.stop()

    asyncio.run(send())


@pytest.fixture(scope="module")
def gateways(sqlite_stack: Stack) -> Iterator[dict[str, int]]:
    """Two gateways sharing Redis (db 11, flushed), with a 1 s CONNECT timeout and 3 failed
    logins per minute per address."""
    redis.Redis(db=REDIS_DB).flushdb()
    ports = {}
    for name in ("gw-a", "gw-b"):
        ports[name] = free_port()
        sqlite_stack.add(
            f"gateway-{name}",
            SLUICE_MQTT_PORT=str(ports[name]),
            SLUICE_WS_PORT=str(free_port()),
            SLUICE_REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
            SLUICE_CONNECT_TIMEOUT="1",
            SLUICE_AUTH_FAILURES_PER_MINUTE="3",
            SLUICE_NODE_ID=f"{name}-{uuid.uuid4().hex[:4]}",
        ).start()
    sqlite_stack.wait_ready(["gateway-gw-a", "gateway-gw-b"])
    yield ports
    for name in ("gw-a", "gw-b"):
        sqlite_stack.processes.pop(f"gateway-{name}").stop()


def roomy_window(needed: float = 20.0) -> None:
    """Limits count in fixed wall-clock minutes: start a test well inside one."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.1)


@pytest.fixture
def tiny(sqlite_stack: Stack) -> dict[str, Any]:
    roomy_window()
    plan = f"tiny-{uuid.uuid4().hex[:6]}"
    save_plan(sqlite_stack, plan, TINY)
    account = sqlite_stack.create_account(f"limits-{plan}", plan=plan)
    device = sqlite_stack.create_device(account["token"], name="limited")
    return {"plan": plan, "account": account, **device}


def test_publish_rate_is_one_count_across_gateways(
    gateways: dict[str, int], tiny: dict[str, Any]
) -> None:
    a = Client(gateways["gw-a"], tiny["token"], version=5)
    b = Client(gateways["gw-b"], tiny["token"], version=5)
    assert a.connect() == 0
    assert b.connect() == 0
    codes = [a.publish("rate/a", "x", qos=1) for _ in range(6)]
    time.sleep(1.0)  # longer than the counters' sync interval
    codes += [b.publish("rate/b", "x", qos=1) for _ in range(6)]
    assert codes.count(0) == 10, codes  # the account's 10 per minute, spread over two gateways
    assert set(codes) == {0, 0x97}
    assert not a.disconnected.is_set()  # MQTT 5: refused with a reason code, connection kept


def test_qos0_over_the_limit_is_dropped_and_311_qos1_closes(
    gateways: dict[str, int], tiny: dict[str, Any]
) -> None:
    watcher = Client(gateways["gw-a"], tiny["token"], version=4)
    assert watcher.connect() == 0
    watcher.subscribe("drop/#", qos=0)
    pub = Client(gateways["gw-a"], tiny["token"], version=4)
    assert pub.connect() == 0
    for n in range(14):
        pub.publish("drop/x", str(n), qos=0)
    time.sleep(1.0)
    assert not pub.disconnected.is_set()  # QoS 0 over the limit: dropped, not an error
    pub.publish("drop/x", "one more", qos=1, wait=None)
    pub.wait_disconnected()  # 3.1.1 cannot say "rate too high": the connection is closed
    delivered = watcher.messages.qsize()
    assert delivered <= 3  # subscribe-receive is 3 per minute for this plan


def test_subscribe_receive_limit(gateways: dict[str, int], tiny: dict[str, Any]) -> None:
    sub = Client(gateways["gw-b"], tiny["token"], version=5)
    assert sub.connect() == 0
    sub.subscribe("recv/#", qos=1)
    pub = Client(gateways["gw-b"], tiny["token"], version=5)
    assert pub.connect() == 0
    for n in range(5):
        pub.publish("recv/x", str(n), qos=1)
    time.sleep(1.0)
    assert sub.messages.qsize() == 3


def test_max_connections_and_subscriptions(gateways: dict[str, int], tiny: dict[str, Any]) -> None:
    clients = [
        Client(gateways["gw-a" if n % 2 else "gw-b"], tiny["token"], version=5) for n in range(3)
    ]
    assert [c.connect() for c in clients] == [0, 0, 0]
    time.sleep(2.0)  # both gateways have seen each other's counts (synced every 0.5 s)
    fourth = Client(gateways["gw-a"], tiny["token"], version=5)
    assert fourth.connect() == 0x97
    third = Client(gateways["gw-b"], tiny["token"], version=4)
    assert third.connect() == 3  # 3.1.1: server unavailable
    clients[0].disconnect()
    time.sleep(2.0)
    again = Client(gateways["gw-a"], tiny["token"], version=5)
    assert again.connect() == 0
    assert again.subscribe("s/1", qos=1) == [1]
    assert again.subscribe("s/2", qos=1) == [1]
    assert again.subscribe("s/3", qos=1) == [0x97]


def test_topic_length_and_depth(gateways: dict[str, int], tiny: dict[str, Any]) -> None:
    client = Client(gateways["gw-a"], tiny["token"], version=5)
    assert client.connect() == 0
    assert client.publish("a/b/c/d/e", "deep", qos=1) == 0x90
    assert client.publish("x" * 41, "long", qos=1) == 0x90
    assert client.subscribe("a/b/c/d/#", qos=0) == [0x8F]


def test_plan_change_applies_without_reconnecting(
    sqlite_stack: Stack, gateways: dict[str, int], tiny: dict[str, Any]
) -> None:
    client = Client(gateways["gw-b"], tiny["token"], version=5)
    assert client.connect() == 0
    assert client.publish("a/b/c/d/e", "deep", qos=1) == 0x90
    save_plan(sqlite_stack, tiny["plan"], {**TINY, "max_topic_levels": 8})
    control(sqlite_stack, config.PLAN_CHANGED, plan=tiny["plan"])
    wait_for(lambda: client.publish("a/b/c/d/e", "deep", qos=1) == 0, what="the new plan")


def test_failed_logins_are_throttled_per_address(
    sqlite_stack: Stack, gateways: dict[str, int], tiny: dict[str, Any]
) -> None:
    port = gateways["gw-b"]
    redis.Redis(db=REDIS_DB).delete(
        *redis.Redis(db=REDIS_DB).keys("sluice:mqtt:authfail:*") or ["none"]
    )
    for _ in range(3):
        assert Client(port, "wrong-token", version=5).connect() == 0x86
    time.sleep(0.5)
    # Even the right token is refused from this address for the rest of the window.
    assert Client(port, tiny["token"], version=5).connect() == 0x9F
    redis.Redis(db=REDIS_DB).delete(
        *redis.Redis(db=REDIS_DB).keys("sluice:mqtt:authfail:*") or ["none"]
    )


def test_slow_loris_does_not_block_normal_clients(
    gateways: dict[str, int], tiny: dict[str, Any]
) -> None:
    port = gateways["gw-a"]
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
    dribble = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
    for sock in dribble:
        sock.sendall(b"\x10")  # the first byte of a CONNECT, then nothing more
    normal = Client(port, tiny["token"], version=5)
    assert normal.connect() == 0
    normal.subscribe("loris/#", qos=1)
    assert normal.publish("loris/1", "through", qos=1) == 0
    assert normal.expect().payload == b"through"
    time.sleep(2.5)  # the 1 s CONNECT timeout has passed for every idle socket
    for sock in silent + dribble:
        sock.settimeout(2)
        assert sock.recv(16) == b""  # closed by the gateway
        sock.close()


def test_limit_hits_are_counted_in_metrics(sqlite_stack: Stack, gateways: dict[str, int]) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    url = sqlite_stack.processes["gateway-gw-a"].health_url.replace("/readyz", "/metrics")
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    hits = {
        sample.labels["limit"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "sluice_limit_hits_total"
    }
    assert hits.get("mqtt_publish_per_min", 0) >= 1
