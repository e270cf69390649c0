"""Webhook retries on a stack of their own (fast backoff): a dead webhook's data reaches the
fallback device, a held webhook does not stall other actions, and a crash of the actions
process in the middle of the retries loses no call."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from sluice import records
from sluice.embedded import free_port
from sluice.testing.mqtt import wait_for
from sluice.testing.stack import Stack

Tail = Any  # conftest.InspectorTail


def tenant(stack: Stack) -> dict[str, str]:
    account = stack.create_account(f"retry-{uuid.uuid4().hex[:6]}")
    return {"id": account["id"], "token": account["token"]}


def send(stack: Stack, device_token: str, items: Any) -> None:
    with stack.client(device_token) as http:
        response = http.post("/data", json=items)
        assert response.status_code == 200, response.text


def any_reading(device_id: str) -> list[dict[str, Any]]:
    return [{"device": device_id, "variable": "reading", "is": "*"}]


def dead_letters(stack: Stack, account: str) -> list[dict[str, str]]:
    """Headers of every dead-lettered record of one account."""

    async def read() -> list[dict[str, str]]:
        topic = stack.topic_prefix + records.DEAD_LETTER
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=None)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            await consumer.seek_to_beginning()
            found = []
            batch = await consumer.getmany(timeout_ms=2000)
            while batch:
                for recs in batch.values():
                    for record in recs:
                        headers = {k: v.decode() for k, v in record.headers}
                        if headers.get("account") == account:
                            found.append(headers)
                batch = await consumer.getmany(timeout_ms=300)
            return found
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_dead_webhook_data_goes_to_the_fallback_device_after_ten_attempts(
    fast_stack: Stack, webhook: Callable[..., Any], inspector: Callable[[Stack, str], Tail]
) -> None:
    stack = fast_stack
    account = tenant(stack)
    sensor = stack.create_device(account["token"], name="sensor", type="mutable")
    spare = stack.create_device(account["token"], name="spare", type="mutable")
    events = inspector(stack, account["id"])
    hook = webhook()
    hook.failing = True
    with_fallback = stack.create_action(
        account["token"],
        name="to a failing host",
        type="condition",
        trigger=any_reading(sensor["device_id"]),
        action={"type": "post", "url": hook.url + "/in", "fallback_device": spare["device_id"]},
    )
    nowhere = f"http://127.0.0.1:{free_port()}/nobody-listens"
    without = stack.create_action(
        account["token"],
        name="to no host",
        type="condition",
        trigger=any_reading(sensor["device_id"]),
        action={"type": "post", "url": nowhere},
    )
    send(stack, sensor["token"], {"variable": "reading", "value": 7, "metadata": {"lot": "b1"}})

    def fallback_data() -> list[dict[str, Any]]:
        with stack.client(spare["token"]) as http:
            result: list[dict[str, Any]] = http.get("/data", params={"variable": "reading"}).json()[
                "result"
            ]
            return result

    stored = wait_for(fallback_data, 90, what="the data on the fallback device")
    assert len(stored) == 1
    assert stored[0]["value"] == 7
    metadata = stored[0]["metadata"]
    assert metadata["lot"] == "b1"
    assert metadata["_http_url"] == hook.url + "/in"
    assert metadata["_http_attempts"] == 10
    assert metadata["_http_error"].startswith("HTTP 500")
    calls = hook.all_calls()
    assert [c.headers["tagoio-retries"] for c in calls] == [str(n) for n in range(10)]
    events.wait_status(with_fallback, "failed")
    assert events.statuses(with_fallback).count("retry") == 9
    failed = next(e for e in events.actions(with_fallback) if e["status"] == "failed")
    assert failed["outcome"] == f"data sent to fallback device {spare['device_id']}"

    # Without a fallback device the job is parked on the dead-letter topic, with the reason.
    events.wait_status(without, "failed", timeout=90)
    parked = wait_for(lambda: dead_letters(stack, account["id"]), 30, what="the dead letter")
    assert parked[0]["dead_service"] == "actions"
    assert parked[0]["dead_reason"].startswith("post failed after 10 attempts: request failed")
    assert parked[0]["device"] == sensor["device_id"]

    # …and each step is counted on the service's /metrics.
    metrics = metric_values(stack)
    assert metrics['sluice_action_executions_total{outcome="retry",type="post"}'] >= 18
    assert metrics['sluice_action_executions_total{outcome="failed",type="post"}'] >= 2
    assert metrics["sluice_action_fallbacks_total"] >= 1


def metric_values(stack: Stack) -> dict[str, float]:
    url = stack.processes["actions"].health_url.replace("/readyz", "/metrics")
    text = httpx.get(url, timeout=30).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_a_held_webhook_does_not_stall_other_actions(
    fast_stack: Stack, webhook: Callable[..., Any]
) -> None:
    stack = fast_stack
    account = tenant(stack)
    busy = stack.create_device(account["token"], name="busy", type="mutable")
    calm = stack.create_device(account["token"], name="calm", type="mutable")
    slow, quick = webhook(), webhook()
    slow.hold = threading.Event()
    for device, hook in ((busy, slow), (calm, quick)):
        stack.create_action(
            account["token"],
            name=f"hook of {device['device_id']}",
            type="condition",
            trigger=any_reading(device["device_id"]),
            action={"type": "post", "url": hook.url},
        )
    for value in range(6):
        send(stack, busy["token"], {"variable": "reading", "value": value})
    # The stack allows 2 calls in progress per action (SLUICE_ACTION_CONCURRENCY_PER_ACTION).
    wait_for(lambda: slow.in_flight == 2, 60, what="the slow webhook to hold two calls")
    send(stack, calm["token"], {"variable": "reading", "value": 100})
    wait_for(quick.successes, 60, what="the other action's webhook")
    assert slow.in_flight == 2
    assert slow.all_calls() == []  # still holding every call it got
    slow.hold.set()
    done = wait_for(lambda: len(slow.successes()) >= 6 and slow.successes(), 60, what="all six")
    assert sorted(c.body[0]["value"] for c in done) == list(range(6))
    assert slow.max_in_flight == 2
    assert [c.body[0]["value"] for c in quick.all_calls()] == [100]


def test_killing_the_actions_process_mid_retry_loses_no_call(
    fast_stack: Stack, webhook: Callable[..., Any], inspector: Callable[[Stack, str], Tail]
) -> None:
    stack = fast_stack
    account = tenant(stack)
    sensor = stack.create_device(account["token"], name="sensor", type="mutable")
    events = inspector(stack, account["id"])
    hook = webhook()
    hook.failing = True
    action = stack.create_action(
        account["token"],
        name="survives a crash",
        type="condition",
        trigger=any_reading(sensor["device_id"]),
        action={"type": "post", "url": hook.url},
    )
    send(stack, sensor["token"], {"variable": "reading", "value": 42})
    wait_for(lambda: len(hook.all_calls()) >= 2, 60, what="two failed attempts")
    hook.hold = threading.Event()  # the next attempt hangs: the process dies in the middle
    wait_for(lambda: hook.in_flight == 1, 60, what="an attempt in progress")
    time.sleep(1.5)  # room for the process to commit whatever it (wrongly) thinks is done
    actions = stack.processes["actions"]
    actions.kill()  # SIGKILL: no drain, no final commit
    held = len(hook.all_calls())
    hook.hold.set()  # the hung call ends with a failure nobody hears
    wait_for(lambda: len(hook.all_calls()) == held + 1, what="the hung call to end")
    assert hook.successes() == []
    hook.hold, hook.failing = None, False
    actions.start()
    stack.wait_ready(["actions"])
    calls = wait_for(hook.successes, 60, what="the call after the restart")
    assert calls[0].body[0]["value"] == 42
    assert int(calls[0].headers["tagoio-retries"]) >= 2  # it carried on, it did not start over
    events.wait_status(action, "success")
