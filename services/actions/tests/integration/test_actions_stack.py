"""Actions through the whole stack: conditions with lock/unlock on data sent by POST /data,
webhooks, MQTT publishes to a device, e-mail over SMTP, and the definitions the API refuses."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from sluice.testing.mqtt import Client, wait_for
from sluice.testing.stack import Stack

Tail = Any  # conftest.InspectorTail (conftest modules are not importable by name)


def tenant(stack: Stack) -> dict[str, str]:
    account = stack.create_account(f"act-{uuid.uuid4().hex[:6]}")
    return {"id": account["id"], "token": account["token"]}


def send(stack: Stack, device_token: str, items: Any) -> None:
    with stack.client(device_token) as http:
        response = http.post("/data", json=items)
        assert response.status_code == 200, response.text
        assert response.json()["result"].endswith("Data Added")


def get_action(stack: Stack, token: str, action: str) -> dict[str, Any]:
    with stack.client(token) as http:
        response = http.get(f"/action/{action}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["result"]
        return result


def test_condition_alerts_once_above_95_and_rearms_below_90(
    stack: Stack, webhook: Callable[..., Any], inspector: Callable[[Stack, str], Tail]
) -> None:
    """TagoIO's hysteresis example, on data sent with POST /data, lock state in the API."""
    account = tenant(stack)
    boiler = stack.create_device(account["token"], name="boiler", type="mutable")
    hook = webhook()
    events = inspector(stack, account["id"])
    hot = {
        "device": boiler["device_id"],
        "variable": "temperature",
        "is": ">",
        "value": "95",
        "value_type": "number",
    }
    cool = {**hot, "is": "<", "value": "90", "unlock": True}
    action = stack.create_action(
        account["token"],
        name="boiler too hot",
        type="condition",
        trigger=[hot, cool],
        action={
            "type": "post",
            "url": hook.url + "/alert/$DEVICE$?value=$VALUE$",
            "headers": {"X-Device": "$DEVICE.NAME$", "X-State": "$ACTION.STATE$"},
        },
    )

    for value in (80, 96, 97, 99, 89, 93, "98.5"):  # one message each, in this order
        send(stack, boiler["token"], {"variable": "temperature", "value": value, "unit": "C"})
    calls = wait_for(lambda: len(hook.successes()) >= 2 and hook.successes(), 60, what="2 alerts")
    assert [c.body[0]["value"] for c in calls] == [96, "98.5"]  # 97 and 99 came while locked
    first = calls[0]
    assert first.path == f"/alert/{boiler['device_id']}"
    assert first.query == {"value": ["96"]}
    assert first.headers["x-device"] == "boiler"
    assert first.headers["x-state"] == "locked"
    assert first.headers["tagoio-retries"] == "0"
    assert first.body[0]["variable"] == "temperature"
    assert first.body[0]["unit"] == "C"
    assert first.body[0]["device"] == boiler["device_id"]
    assert get_action(stack, account["token"], action)["locked"] is True
    wait_for(lambda: get_action(stack, account["token"], action)["last_triggered"], what="time")
    events.wait_status(action, "locked", count=2)
    assert events.statuses(action).count("unlocked") == 1

    # The lock is settable through the API: unlocked, the next hot reading fires again.
    with stack.client(account["token"]) as http:
        response = http.put(f"/action/{action}/lock", json={"locked": False})
        assert response.status_code == 200, response.text
        assert response.json()["result"]["locked"] is False
    send(stack, boiler["token"], {"variable": "temperature", "value": 120})
    wait_for(lambda: len(hook.successes()) == 3, 60, what="the alert after unlocking")
    assert hook.successes()[2].body[0]["value"] == 120
    wait_for(lambda: get_action(stack, account["token"], action)["locked"], what="locked again")
    assert len(hook.all_calls()) == 3


def test_webhook_retries_until_2xx_with_the_mqtt_message_as_data(
    sqlite_stack: Stack, webhook: Callable[..., Any], inspector: Callable[[Stack, str], Tail]
) -> None:
    stack = sqlite_stack
    account = tenant(stack)
    meter = stack.create_device(
        account["token"], name="meter", tags=[{"key": "kind", "value": "meter"}]
    )
    hook = webhook(fail_first=2, fail_status=503)
    events = inspector(stack, account["id"])
    action = stack.create_action(
        account["token"],
        name="forward",
        type="mqtt_topic",
        # Both triggers match the publish: the action still fires once.
        trigger=[
            {"device": meter["device_id"], "topic": "meters/#"},
            {"tag_key": "kind", "tag_value": "meter", "topic": "meters/+"},
        ],
        action={
            "type": "post",
            "url": hook.url + "/in",
            "headers": [{"key": "Authorization", "value": "Bearer s3cret"}],
        },
    )
    client = Client(stack.mqtt_port, meter["token"], version=4)
    assert client.connect() == 0
    payload = {"variable": "energy", "value": 12.5, "unit": "kWh", "metadata": {"phase": 1}}
    assert client.publish("meters/m1", json.dumps(payload), qos=1) == 0
    client.disconnect()

    wait_for(hook.successes, 60, what="the webhook to accept the call")
    events.wait_status(action, "success")
    calls = hook.all_calls()
    assert [c.status for c in calls] == [503, 503, 200]
    assert [c.headers["tagoio-retries"] for c in calls] == ["0", "1", "2"]
    assert all(c.headers["authorization"] == "Bearer s3cret" for c in calls)
    expected = {**payload, "metadata": {"phase": 1, "mqtt_topic": "meters/m1"}}
    assert all(c.body == [{**expected, "device": meter["device_id"]}] for c in calls)
    statuses = events.statuses(action)
    assert statuses.count("queued") == 1
    assert statuses.count("retry") == 2
    retry = next(e for e in events.actions(action) if e["status"] == "retry")
    assert retry["error"].startswith("HTTP 503")


def test_mqtt_action_publishes_to_a_device_in_tag_scope_created_later(
    sqlite_stack: Stack, inspector: Callable[[Stack, str], Tail]
) -> None:
    stack = sqlite_stack
    account = tenant(stack)
    events = inspector(stack, account["id"])
    panel = stack.create_device(account["token"], name="panel")
    listener = Client(stack.mqtt_port, panel["token"], version=5)
    assert listener.connect() == 0
    assert listener.subscribe("alerts/#", qos=1) == [1]
    action = stack.create_action(
        account["token"],
        name="echo to panel",
        type="mqtt_topic",
        trigger=[{"tag_key": "kind", "tag_value": "probe", "topic": "data/+"}],
        action={
            "type": "mqtt",
            "device": panel["device_id"],
            "topic": "alerts/$DEVICE.NAME$",
            "payload": "$VARIABLE$=$VALUE$$UNIT$",
            "qos": 1,
        },
    )
    # Both devices are created after the action; only the tagged one is in its scope.
    stranger = stack.create_device(account["token"], name="stranger")
    probe = stack.create_device(
        account["token"], name="probe-7", tags=[{"key": "kind", "value": "probe"}]
    )
    for device in (stranger, probe):
        client = Client(stack.mqtt_port, device["token"], version=4)
        assert client.connect() == 0
        body = {"variable": "temp", "value": 21.5, "unit": "C"}
        assert client.publish("data/x", json.dumps(body), qos=1) == 0
        client.disconnect()
    message = listener.expect(timeout=30)
    assert (message.topic, message.payload) == ("alerts/probe-7", b"temp=21.5C")
    assert message.qos == 1

    # A change applies to the next messages without any restart.
    with stack.client(account["token"]) as http:
        changed = {
            "type": "mqtt",
            "device": panel["device_id"],
            "topic": "alerts/v2",
            "payload": "v2 $VALUE$ from $DEVICE$",
        }
        assert http.put(f"/action/{action}", json={"action": changed}).status_code == 200
    sender = Client(stack.mqtt_port, probe["token"], version=4)
    assert sender.connect() == 0
    deadline = time.monotonic() + 30
    while True:
        assert sender.publish("data/x", '{"variable":"temp","value":3}', qos=1) == 0
        message = listener.expect(timeout=30)
        if message.topic == "alerts/v2":
            break
        assert time.monotonic() < deadline, "the changed action never applied"
    assert message.payload == f"v2 3 from {probe['device_id']}".encode()
    sender.disconnect()
    listener.disconnect()
    events.wait_status(action, "success", count=2)
    fired_by = {e["device"] for e in events.actions(action)}
    assert fired_by == {probe["device_id"]}


def test_email_waits_for_the_smtp_server_and_then_goes_out(
    sqlite_stack: Stack, smtp_server: Any, inspector: Callable[[Stack, str], Tail]
) -> None:
    stack = sqlite_stack
    account = tenant(stack)
    door = stack.create_device(account["token"], name="back door")
    events = inspector(stack, account["id"])
    with stack.client(account["token"]) as http:
        smtp = {
            "host": "127.0.0.1",
            "port": smtp_server.port,
            "from": "Sluice alerts <alerts@sluice.test>",
            "security": "none",
        }
        assert http.put("/account/smtp", json=smtp).status_code == 200
    action = stack.create_action(
        account["token"],
        name="door alarm",
        type="mqtt_topic",
        trigger=[{"device": door["device_id"], "topic": "door"}],
        action={
            "type": "email",
            "to": "ops@sluice.test; boss@sluice.test",
            "subject": "$DEVICE.NAME$: $VARIABLE$ is $VALUE$",
            "message": "Seen at $TIME$ on device $DEVICE$.",
        },
    )
    client = Client(stack.mqtt_port, door["token"], version=4)
    assert client.connect() == 0
    at = "2026-01-05T10:00:00.000Z"
    assert (
        client.publish("door", json.dumps({"variable": "state", "value": "open", "time": at}), 1)
        == 0
    )
    client.disconnect()

    # Nothing listens on the SMTP port yet: the user sees a retry with the reason.
    events.wait_status(action, "retry")
    retry = next(e for e in events.actions(action) if e["status"] == "retry")
    assert f"127.0.0.1:{smtp_server.port}" in retry["error"]
    smtp_server.start()
    wait_for(lambda: smtp_server.mailbox.messages, 60, what="the e-mail")
    sender, recipients, message = smtp_server.mailbox.messages[0]
    assert sender == "alerts@sluice.test"
    assert recipients == ["ops@sluice.test", "boss@sluice.test"]
    assert message["Subject"] == "back door: state is open"
    assert message["From"] == "Sluice alerts <alerts@sluice.test>"
    assert message.get_payload().strip() == f"Seen at {at} on device {door['device_id']}."
    events.wait_status(action, "success")


def test_smtp_settings_keep_the_password_to_themselves(sqlite_stack: Stack) -> None:
    account = tenant(sqlite_stack)
    with sqlite_stack.client(account["token"]) as http:
        missing = http.get("/account/smtp")
        assert missing.status_code == 404
        assert "PUT /account/smtp" in missing.json()["message"]
        body = {
            "host": "smtp.example.com",
            "username": "me",
            "password": "hunter2",
            "from": "me@example.com",
        }
        saved = http.put("/account/smtp", json=body).json()["result"]
        assert saved == {
            "host": "smtp.example.com",
            "port": 587,
            "username": "me",
            "from": "me@example.com",
            "security": "starttls",
            "password_set": True,
        }
        body.pop("password")
        again = http.put("/account/smtp", json={**body, "port": 465, "security": "tls"})
        assert again.json()["result"]["password_set"] is True  # kept when not sent
        shown = http.get("/account/smtp").text
        assert "hunter2" not in shown
        bad = http.put("/account/smtp", json={**body, "from": "nobody"})
        assert bad.status_code == 400
        assert "'from'" in bad.json()["message"]
        assert http.delete("/account/smtp").status_code == 200
        assert http.get("/account/smtp").status_code == 404


BAD_DEFINITIONS: list[tuple[str, dict[str, Any], str]] = [
    ("mqtt_topic", {"topic": "a/#/b"}, "'#' must be the last level"),
    ("mqtt_topic", {"topic": "a/#", "device": "000000000000000000000000"}, "not found"),
    ("condition", {"variable": "t", "is": ">=", "value": 1}, "'is' must be one of"),
    ("condition", {"variable": "t", "is": ">", "value": "hot"}, "'value' must be a number"),
    (
        "condition",
        {"variable": "t", "is": ">", "value": 1, "value_type": "string"},
        "compares numbers",
    ),
    ("condition", {"variable": "t", "is": "><", "value": 1}, "second_value"),
    ("condition", {"variable": "t", "is": "=", "value": "x", "value_type": "boolean"}, "boolean"),
    ("condition", {"variable": "t", "is": "*", "unlock": True}, "without 'unlock'"),
]
BAD_ACTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("condition", {"type": "insert"}, "needs an mqtt_topic trigger"),
    ("mqtt_topic", {"type": "sms"}, "action.type must be one of"),
    ("mqtt_topic", {"type": "post", "url": "ftp://x"}, "http:// or https://"),
    (
        "mqtt_topic",
        {"type": "post", "url": "http://x", "headers": {"Bad Name": "v"}},
        "header name",
    ),
    (
        "mqtt_topic",
        {"type": "post", "url": "http://x", "fallback_device": "nope"},
        "fallback_device",
    ),
    ("mqtt_topic", {"type": "mqtt", "device": "nope", "topic": "t"}, "action.device"),
    ("mqtt_topic", {"type": "email", "to": "not-an-address", "subject": "s"}, "e-mail addresses"),
    ("mqtt_topic", {"type": "email", "to": "a@b.c"}, "action.subject is required"),
]


def test_definitions_the_service_could_not_run_are_refused(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    account = tenant(stack)
    device = stack.create_device(account["token"], name="d")
    other = stack.create_device(tenant(stack)["token"], name="someone else's")
    with stack.client(account["token"]) as http:
        for kind, trigger, message in BAD_DEFINITIONS:
            body = {
                "name": "x",
                "type": kind,
                "trigger": [{"device": device["device_id"], **trigger}],
                "action": {"type": "post", "url": "http://x"},
            }
            response = http.post("/action", json=body)
            assert response.status_code == 400, (trigger, response.text)
            assert message in response.json()["message"], (trigger, response.text)
        for kind, action, message in BAD_ACTIONS:
            trigger = {"device": device["device_id"], "topic": "t", "variable": "v", "is": "*"}
            body = {"name": "x", "type": kind, "trigger": [trigger], "action": action}
            response = http.post("/action", json=body)
            assert response.status_code == 400, (action, response.text)
            assert message in response.json()["message"], (action, response.text)
        # Another account's device is not a valid target either.
        body = {
            "name": "x",
            "type": "mqtt_topic",
            "trigger": [{"device": device["device_id"], "topic": "t"}],
            "action": {"type": "mqtt", "device": other["device_id"], "topic": "t"},
        }
        assert http.post("/action", json=body).status_code == 400
        assert http.get("/action").json()["result"] == []  # nothing was saved

        good = stack.create_action(
            account["token"],
            name="ok",
            type="mqtt_topic",
            trigger=[{"device": device["device_id"], "topic": "t"}],
            action={"type": "insert"},
        )
        response = http.put(f"/action/{good}", json={"trigger": [{"tag_key": "", "topic": "t"}]})
        assert response.status_code == 400
        assert "'tag_key'" in response.json()["message"]
        assert get_action(stack, account["token"], good)["trigger"][0]["topic"] == "t"
        assert (
            http.put("/action/000000000000000000000000/lock", json={"locked": True}).status_code
            == 404
        )
        assert http.put(f"/action/{good}/lock", json={"lock": True}).json()["result"]["locked"]
