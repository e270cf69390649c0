"""Kafka down: the gateway stops acknowledging (never acks what Kafka has not stored),
keeps the connection, and acknowledges once Kafka is back. Uses its own Tansu.

Tansu keeps topics in memory: the restarted broker is empty, and (unlike Apache Kafka,
which answers UNKNOWN_TOPIC_OR_PARTITION) it acknowledges produces to topics it no longer
has and drops them. So what this test can hold the gateway to is the acknowledgement
timing and that publishing works again; the record held during the outage reaching the
new broker depends on the topics existing before the gateway's retry lands.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from sluice import bus, records
from sluice.embedded import EmbeddedKafka, free_port
from sluice.settings import SluiceSettings
from sluice.testing.mqtt import Client, MqttTimeout
from sluice.testing.stack import Stack


def create_topics(bootstrap: str, prefix: str) -> None:
    settings = SluiceSettings(kafka_bootstrap=bootstrap, topic_partitions=2)
    asyncio.run(bus.ensure_topics(settings, records.TopicNames(prefix)))


@pytest.fixture
def outage_stack(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[Stack, EmbeddedKafka]]:
    broker = EmbeddedKafka(port=free_port())
    broker.start()
    asyncio.run(broker.wait_ready())
    prefix = f"o{uuid.uuid4().hex[:8]}."
    create_topics(broker.bootstrap, prefix)
    stack = Stack(
        broker.bootstrap, sqlite_url, prefix, tmp_path / "logs", services=("gateway", "api")
    )
    stack.start()
    yield stack, broker
    stack.stop()
    broker.stop()


def uplink_values(bootstrap: str, prefix: str) -> list[bytes]:
    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            prefix + "uplink",
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            out: list[bytes] = []
            batch = await consumer.getmany(timeout_ms=2000)
            while batch:
                out += [r.value or b"" for recs in batch.values() for r in recs]
                batch = await consumer.getmany(timeout_ms=500)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_no_ack_while_kafka_is_down_and_ack_after_it_returns(
    outage_stack: tuple[Stack, EmbeddedKafka],
) -> None:
    stack, broker = outage_stack
    account = stack.create_account("outage")
    device = stack.create_device(account["token"], name="d")
    client = Client(stack.mqtt_port, device["token"], version=5, keepalive=60)
    assert client.connect() == 0
    assert client.publish("before", "stored", qos=1) == 0

    broker.stop()
    outcome: dict[str, object] = {}

    def publish_during_outage() -> None:
        try:
            outcome["code"] = client.publish("during", "held", qos=1, wait=60)
            outcome["at"] = time.monotonic()
        except MqttTimeout as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=publish_during_outage)
    worker.start()
    time.sleep(3)
    assert "code" not in outcome, "the gateway acknowledged a publish Kafka never stored"
    assert not client.disconnected.is_set(), "the gateway dropped the connection during the outage"

    restarted = time.monotonic()
    broker.start()  # a fresh, empty Tansu on the same port
    create_topics(broker.bootstrap, stack.topic_prefix)
    worker.join(70)
    assert outcome.get("code") == 0, outcome
    assert float(outcome["at"]) >= restarted  # type: ignore[arg-type]
    assert not client.disconnected.is_set()
    assert client.publish("after", "stored again", qos=1) == 0
    assert b"stored again" in uplink_values(broker.bootstrap, stack.topic_prefix)
