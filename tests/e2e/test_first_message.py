"""From a device's MQTT publish to a stored data point, through the real services.

gateway → sluice.uplink → actions → sluice.ingest → parser → sluice.data → storage → SQL ← api
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sluice.testing.mqtt import Client, wait_for
from sluice.testing.stack import Stack


def last_value(stack: Stack, token: str, variable: str) -> list[dict[str, object]]:
    with stack.client(token) as http:
        response = http.get("/data", params={"variable": variable, "query": "last_value"})
        assert response.status_code == 200, response.text
        result: list[dict[str, object]] = response.json()["result"]
        return result


def count(stack: Stack, token: str, variable: str) -> int:
    with stack.client(token) as http:
        value: int = http.get("/data", params={"variable": variable, "query": "count"}).json()[
            "result"
        ]
        return value


@pytest.fixture
def tenant(stack: Stack) -> dict[str, str]:
    account = stack.create_account(f"acme-{uuid.uuid4().hex[:6]}")
    device = stack.create_device(account["token"], name="thermometer")
    stack.insert_action(account["token"], device["device_id"], "sensors/#")
    return {
        "account_token": account["token"],
        "device": device["device_id"],
        "token": device["token"],
    }


def test_paho_qos1_publish_is_stored_and_readable(stack: Stack, tenant: dict[str, str]) -> None:
    client = Client(stack.mqtt_port, tenant["token"], client_id="thermo-1", version=4)
    assert client.connect() == 0
    payload = {"variable": "temperature", "value": 21.5, "unit": "C", "metadata": {"room": "lab"}}
    assert client.publish("sensors/lab", json.dumps(payload), qos=1) == 0  # PUBACK after Kafka
    client.disconnect()

    items = wait_for(
        lambda: last_value(stack, tenant["token"], "temperature"), what="the stored value"
    )
    item = items[0]
    assert item["value"] == 21.5
    assert item["unit"] == "C"
    assert item["device"] == tenant["device"]
    assert item["metadata"] == {"room": "lab", "mqtt_topic": "sensors/lab"}


def test_topic_without_insert_action_is_not_stored(stack: Stack, tenant: dict[str, str]) -> None:
    client = Client(stack.mqtt_port, tenant["token"], version=4)
    assert client.connect() == 0
    assert client.publish("other/topic", '{"variable":"ignored","value":1}', qos=1) == 0
    assert client.publish("sensors/x", '{"variable":"marker","value":1}', qos=1) == 0
    client.disconnect()
    wait_for(lambda: last_value(stack, tenant["token"], "marker"), what="the marker")
    assert count(stack, tenant["token"], "ignored") == 0


def test_mosquitto_pub_text_payload(stack: Stack, tenant: dict[str, str]) -> None:
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(stack.mqtt_port),
            "-u",
            "Token",
            "-P",
            tenant["token"],
            "-q",
            "1",
            "-t",
            "sensors/raw",
            "-m",
            "hello",
        ],
        check=True,
        timeout=20,
    )
    items = wait_for(lambda: last_value(stack, tenant["token"], "payload"), what="the text payload")
    assert items[0]["value"] == "hello"
    assert items[0]["metadata"] == {"mqtt_topic": "sensors/raw", "topic": "sensors/raw"}


def test_replayed_kafka_record_leaves_one_row(stack: Stack, tenant: dict[str, str]) -> None:
    client = Client(stack.mqtt_port, tenant["token"], version=4)
    assert client.connect() == 0
    assert client.publish("sensors/replay", '{"variable":"replayed","value":7}', qos=1) == 0
    client.disconnect()
    wait_for(lambda: last_value(stack, tenant["token"], "replayed"), what="the first copy")

    async def replay() -> int:
        """Re-produce every data record of this device, as a crash before commit would."""
        topic = stack.topic_prefix + "data"
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        await consumer.start()
        await producer.start()
        try:
            records = []
            batch = await consumer.getmany(timeout_ms=3000)
            while batch:
                records += [
                    r for recs in batch.values() for r in recs if r.key == tenant["device"].encode()
                ]
                batch = await consumer.getmany(timeout_ms=500)
            for record in records:
                await producer.send_and_wait(
                    topic, record.value, key=record.key, headers=list(record.headers)
                )
            return len(records)
        finally:
            await consumer.stop()
            await producer.stop()

    assert asyncio.run(replay()) >= 1
    # Let storage consume the replay; the marker written after it proves it got that far.
    marker = Client(stack.mqtt_port, tenant["token"], version=4)
    assert marker.connect() == 0
    assert marker.publish("sensors/replay", '{"variable":"after_replay","value":1}', qos=1) == 0
    marker.disconnect()
    wait_for(
        lambda: last_value(stack, tenant["token"], "after_replay"),
        what="the marker after the replay",
    )
    assert count(stack, tenant["token"], "replayed") == 1


def test_accounts_never_see_each_other(stack: Stack, tenant: dict[str, str]) -> None:
    other = stack.create_account("intruder")
    spy_device = stack.create_device(other["token"], name="spy")
    spy = Client(stack.mqtt_port, spy_device["token"], client_id="thermo-1", version=5)
    assert spy.connect() == 0
    assert spy.subscribe("#", qos=1) == [1]

    victim = Client(stack.mqtt_port, tenant["token"], client_id="thermo-1", version=4)
    listener = Client(stack.mqtt_port, tenant["token"], client_id="own-listener", version=4)
    assert victim.connect() == 0
    assert listener.connect() == 0
    listener.subscribe("sensors/#", qos=1)
    assert victim.publish("sensors/secret", '{"variable":"secret","value":42}', qos=1) == 0
    # The publisher's own account sees it; the other account does not, not even with '#'.
    assert listener.expect().topic == "sensors/secret"
    spy.expect_none(within=1.5)

    wait_for(lambda: last_value(stack, tenant["token"], "secret"), what="the secret to be stored")
    assert last_value(stack, spy_device["token"], "secret") == []
    with stack.client(other["token"]) as http:
        assert http.get(f"/device/{tenant['device']}").status_code == 404
        assert http.get(f"/device/token/{tenant['device']}").status_code == 404
    for c in (spy, victim, listener):
        c.disconnect()
