"""Tenant isolation: account B tries every path to account A's data, with A's ids and tokens.

MQTT: wildcard and shared subscriptions, the same topic names, A's account id as a topic
level, retained messages, wills, a client id A uses (takeover, persistent-session state) and
platform publishes aimed at A's device. REST: every device, data, bucket, export, inspector,
parser, token, param, action, relay and account route with A's ids, B's account and device
tokens, and tokens of the wrong kind.

A leak is: B receives anything carrying A's secret marker (every name and value of A holds
it), a request on A's resources succeeds (2xx) where it is not merely answered within B's own
account, or A's state (devices, data, tokens, params, actions, relays, account) changes.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from chaoslib.report import format_matrix, report
from sqlalchemy import text

from sluice.db import create_engine
from sluice.testing.mqtt import Client, MqttTimeout, wait_for
from sluice.testing.stack import Stack

SECRET = f"asecret{uuid.uuid4().hex[:10]}"


@dataclass
class Tenant:
    account: dict[str, Any]
    devices: list[dict[str, Any]]  # device_id, token
    extra: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.account["token"])


def http(stack: Stack, token: str | None = None) -> httpx.Client:
    return stack.client(token)


def make_tenants(stack: Stack) -> tuple[Tenant, Tenant]:
    a_account = stack.create_account(f"tenant-a-{SECRET}")
    a_mutable = stack.create_device(a_account["token"], name=f"a1-{SECRET}", type="mutable")
    a_immutable = stack.create_device(a_account["token"], name=f"a2-{SECRET}")
    b_account = stack.create_account("tenant-b")
    b_device = stack.create_device(b_account["token"], name="b1", type="mutable")
    extra: dict[str, Any] = {}
    with http(stack, a_account["token"]) as a:
        extra["serial"] = f"SN-{SECRET}"
        created = a.post(
            "/device/token",
            json={
                "device": a_mutable["device_id"],
                "name": SECRET,
                "serie_number": extra["serial"],
            },
        )
        created.raise_for_status()
        extra["extra_token"] = created.json()["result"]["token"]
        params = a.post(
            f"/device/{a_mutable['device_id']}/params",
            json=[{"key": "secret", "value": SECRET}],
        )
        params.raise_for_status()
        extra["param"] = params.json()["result"][0]["id"]
        extra["action"] = stack.create_action(
            a_account["token"],
            name=f"action-{SECRET}",
            type="mqtt_topic",
            trigger=[{"device": a_mutable["device_id"], "topic": "iso/#"}],
            action={"type": "insert"},
        )
        relay = a.post(
            "/relay",
            json={
                "name": f"relay-{SECRET}",
                "active": False,
                "host": "127.0.0.1",
                "port": 1,
                "username": "relay",
                "password": SECRET,
                "subscriptions": [{"topic": "x/#", "qos": 1}],
                "mapping": {"type": "device", "device": a_mutable["device_id"]},
            },
        )
        relay.raise_for_status()
        extra["relay"] = relay.json()["result"]["relay"]
        chunks = a.get(f"/device/{a_immutable['device_id']}/chunk")
        chunks.raise_for_status()
        extra["chunk"] = chunks.json()["result"][-1]["id"]
    for device in (a_mutable, a_immutable):
        with http(stack, device["token"]) as d:
            stored = d.post(
                "/data?wait=true",
                json=[{"variable": "secret", "value": SECRET, "metadata": {"m": SECRET}}],
            )
            assert stored.status_code == 200, stored.text
    with http(stack, a_mutable["token"]) as d:
        extra["item"] = d.get("/data", params={"variable": "secret"}).json()["result"][0]["id"]
    return (
        Tenant(a_account, [a_mutable, a_immutable], extra),
        Tenant(b_account, [b_device], {}),
    )


# Everything of an account, straight from the database, minus what use alone changes.
STATE_TABLES = {
    "accounts": "id = :a",
    "account_tokens": "account_id = :a",
    "devices": "account_id = :a",
    "device_tokens": "account_id = :a",
    "device_params": "device_id IN (SELECT id FROM devices WHERE account_id = :a)",
    "actions": "account_id = :a",
    "relays": "account_id = :a",
    "data_points": "device_id IN (SELECT id FROM devices WHERE account_id = :a)",
}
VOLATILE = {"last_input", "last_authorization", "last_triggered"}


async def _account_state(database_url: str, account_id: str) -> str:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            state = {}
            for table, where in STATE_TABLES.items():
                result = await conn.execute(
                    text(f"SELECT * FROM {table} WHERE {where}"), {"a": account_id}
                )
                rows = [
                    {k: v for k, v in row._mapping.items() if k not in VOLATILE} for row in result
                ]
                state[table] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
            return json.dumps(state, sort_keys=True)
    finally:
        await engine.dispose()


def fingerprint(stack: Stack, a: Tenant) -> str:
    """A's rows in every table B could reach, as they are now."""
    return asyncio.run(_account_state(stack.database_url, a.account["id"]))


def settled_fingerprint(stack: Stack, a: Tenant) -> str:
    """A's state once A's own in-flight traffic (MQTT inserts) has landed."""
    last, since = fingerprint(stack, a), time.monotonic()
    while time.monotonic() - since < 2.0:
        time.sleep(0.25)
        now = fingerprint(stack, a)
        if now != last:
            last, since = now, time.monotonic()
    return last


@dataclass
class Attempt:
    path: str  # the matrix row
    method: str
    url: str
    token: str
    json: Any = None
    params: dict[str, Any] | None = None
    scoped: bool = False  # answered within B's own account: a 2xx alone is no leak
    stream: bool = False


def rest_attempts(a: Tenant, b: Tenant) -> list[Attempt]:
    a1, a2 = a.devices[0]["device_id"], a.devices[1]["device_id"]
    b1 = b.devices[0]["device_id"]
    tb, db = b.token, b.devices[0]["token"]
    item, param, action, relay = (a.extra[k] for k in ("item", "param", "action", "relay"))
    insert = {"type": "insert"}
    attempts = [
        Attempt("device", "GET", f"/device/{a1}", tb),
        Attempt("device", "GET", f"/device/{a1}", tb, params={"token": tb}),
        Attempt("device", "PUT", f"/device/{a1}", tb, json={"name": "pwned"}),
        Attempt("device", "DELETE", f"/device/{a2}", tb),
        Attempt("device", "GET", "/device", tb, scoped=True),
        Attempt("device", "GET", f"/device/{a1}", db),  # a device token as an account token
        Attempt("data (account)", "GET", f"/device/{a1}/data", tb),
        Attempt("data (account)", "GET", f"/device/{a1}/data_amount", tb),
        Attempt(
            "data (account)", "POST", f"/device/{a1}/data", tb, json={"variable": "x", "value": 1}
        ),
        Attempt(
            "data (account)", "PUT", f"/device/{a1}/data", tb, json=[{"id": item, "value": "pwned"}]
        ),
        Attempt("data (account)", "DELETE", f"/device/{a1}/data", tb, params={"ids": item}),
        Attempt(
            "data (account)", "GET", f"/device/{b1}/data", tb, params={"ids": item}, scoped=True
        ),
        Attempt("data (device token)", "GET", "/data", db, params={"ids": item}, scoped=True),
        Attempt(
            "data (device token)", "GET", "/data", db, params={"variable": "secret"}, scoped=True
        ),
        Attempt(
            "data (device token)", "GET", "/data", db, params={"query": "last_item"}, scoped=True
        ),
        Attempt("data (device token)", "PUT", "/data", db, json=[{"id": item, "value": "pwned"}]),
        Attempt("data (device token)", "DELETE", "/data", db, params={"ids": item}, scoped=True),
        Attempt("data (device token)", "GET", "/info", db, scoped=True),
        Attempt("data (device token)", "GET", f"/device/{b1}/data", a.devices[0]["token"]),
        Attempt("buckets", "POST", f"/device/{a2}/empty", tb),
        Attempt("buckets", "GET", f"/device/{a2}/chunk", tb),
        Attempt("buckets", "DELETE", f"/device/{a2}/chunk/{a.extra['chunk']}", tb),
        Attempt("export", "GET", f"/device/{a1}/data/export", tb),
        Attempt("export", "GET", f"/device/{a2}/data/export", tb, params={"token": tb}),
        Attempt("inspector", "GET", f"/device/{a1}/inspector", tb, stream=True),
        Attempt(
            "inspector", "GET", f"/device/{a1}/inspector", tb, params={"token": tb}, stream=True
        ),
        Attempt("parser", "POST", f"/device/{a1}/parser/run", tb, json={"raw": "x"}),
        Attempt("tokens", "GET", f"/device/token/{a1}", tb),
        Attempt("tokens", "POST", "/device/token", tb, json={"device": a1, "name": "pwn"}),
        Attempt("tokens", "DELETE", f"/device/token/{a.extra['extra_token']}", tb),
        Attempt("tokens", "DELETE", f"/device/token/{a.devices[1]['token']}", tb),
        Attempt("tokens", "DELETE", f"/account/token/{a.token}", tb),
        Attempt("tokens", "GET", "/account/token", tb, scoped=True),
        # A serial number A uses must not be an oracle: B may use it in its own account.
        Attempt(
            "tokens",
            "POST",
            "/device/token",
            tb,
            json={"device": b1, "name": "sn", "serie_number": a.extra["serial"]},
            scoped=True,
        ),
        Attempt("params", "GET", f"/device/{a1}/params", tb),
        Attempt("params", "POST", f"/device/{a1}/params", tb, json=[{"key": "k", "value": "v"}]),
        Attempt("params", "PUT", f"/device/{a1}/params/{param}", tb, json={"value": "pwned"}),
        Attempt("params", "DELETE", f"/device/{a1}/params/{param}", tb),
        Attempt("params", "PUT", f"/device/params/{param}", db),
        Attempt("params", "GET", "/device/params", db, scoped=True),
        Attempt("actions", "GET", f"/action/{action}", tb),
        Attempt("actions", "PUT", f"/action/{action}", tb, json={"name": "pwned", "active": False}),
        Attempt("actions", "PUT", f"/action/{action}/lock", tb, json={"locked": True}),
        Attempt("actions", "DELETE", f"/action/{action}", tb),
        Attempt("actions", "GET", "/action", tb, scoped=True),
        Attempt(
            "actions",
            "POST",
            "/action",
            tb,
            json={
                "name": "x",
                "type": "mqtt_topic",
                "trigger": [{"device": a1, "topic": "#"}],
                "action": insert,
            },
        ),
        Attempt(
            "actions",
            "POST",
            "/action",
            tb,
            json={
                "name": "x",
                "type": "mqtt_topic",
                "trigger": [{"device": b1, "topic": "#"}],
                "action": {"type": "mqtt", "device": a1, "topic": "t", "payload": "p"},
            },
        ),
        Attempt(
            "actions",
            "POST",
            "/action",
            tb,
            json={
                "name": "x",
                "type": "mqtt_topic",
                "trigger": [{"device": b1, "topic": "#"}],
                "action": {"type": "post", "url": "http://127.0.0.1:9/", "fallback_device": a1},
            },
        ),
        Attempt(
            "actions",
            "POST",
            "/action",
            tb,
            json={
                "name": "x",
                "type": "condition",
                "trigger": [{"device": a1, "variable": "secret", "is": "*", "value": ""}],
                "action": {"type": "mqtt", "device": b1, "topic": "leak", "payload": "$VALUE$"},
            },
        ),
        Attempt("relay", "GET", f"/relay/{relay}", tb),
        Attempt("relay", "PUT", f"/relay/{relay}", tb, json={"host": "evil.example"}),
        Attempt("relay", "DELETE", f"/relay/{relay}", tb),
        Attempt("relay", "GET", "/relay", tb, scoped=True),
        Attempt(
            "relay",
            "POST",
            "/relay",
            tb,
            json={
                "name": "x",
                "host": "127.0.0.1",
                "active": False,
                "subscriptions": [{"topic": "x", "qos": 0}],
                "mapping": {"type": "device", "device": a1},
            },
        ),
        Attempt(
            "mqtt publish (REST)",
            "POST",
            "/mqtt/publish",
            db,
            json={"topic": "iso/x", "message": "pwn", "device": a1},
        ),
        Attempt(
            "mqtt publish (REST)",
            "POST",
            "/mqtt/publish",
            db,
            json={"topic": "iso/x", "message": "pwn", "bucket": a1},
        ),
        Attempt(
            "mqtt publish (REST)",
            "POST",
            "/analysis/services/mqtt/publish",
            db,
            json={"topic": "iso/x", "message": "pwn", "device": a1},
        ),
        Attempt("account", "GET", f"/account/{a.account['id']}", tb),
        Attempt("account", "PUT", f"/account/{a.account['id']}", tb, json={"active": False}),
        Attempt("account", "DELETE", f"/account/{a.account['id']}", tb),
        Attempt("account", "POST", f"/account/{a.account['id']}/token", tb, json={"name": "x"}),
        Attempt("account", "GET", "/account", tb),
        Attempt("account", "GET", "/account/info", tb, scoped=True),
        Attempt("account", "GET", "/account/smtp", tb, scoped=True),
    ]
    return attempts


def run_attempt(stack: Stack, attempt: Attempt) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {attempt.token}"}
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        if attempt.stream:
            with client.stream(
                attempt.method, attempt.url, headers=headers, params=attempt.params, timeout=5
            ) as response:
                body = ""
                if response.status_code < 400:
                    try:
                        for chunk in response.iter_text():
                            body += chunk
                            if len(body) > 4096:
                                break
                    except httpx.ReadTimeout:
                        pass
                else:
                    body = response.read().decode(errors="replace")
                return response.status_code, body
        response = client.request(
            attempt.method, attempt.url, headers=headers, params=attempt.params, json=attempt.json
        )
        return response.status_code, response.text


@pytest.fixture(scope="module")
def tenants(sqlite_stack: Stack) -> tuple[Tenant, Tenant]:
    return make_tenants(sqlite_stack)


def test_no_path_leaks_across_accounts(sqlite_stack: Stack, tenants: tuple[Tenant, Tenant]) -> None:
    stack = sqlite_stack
    a, b = tenants
    matrix: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    leaks: list[str] = []

    def record(path: str, attempts: int, leaked: int, detail: str = "") -> None:
        matrix[path][0] += attempts
        if leaked:
            matrix[path][1] += leaked
            leaks.append(f"{path}: {detail}")

    mqtt_rows(stack, a, b, record)
    before = settled_fingerprint(stack, a)
    # Controls: the detectors see A's own change and A's own data.
    with http(stack, a.token) as own:
        assert SECRET in own.get(f"/device/{a.devices[0]['device_id']}").text
        own.put(f"/device/{a.devices[0]['device_id']}", json={"tags": [{"key": "k", "value": "v"}]})
    assert fingerprint(stack, a) != before, "the state fingerprint misses a device change"
    before = fingerprint(stack, a)
    for attempt in rest_attempts(a, b):
        status, body = run_attempt(stack, attempt)
        after = fingerprint(stack, a)
        changed = after != before
        shows_secret = SECRET in body
        succeeded = 200 <= status < 300 and not attempt.scoped
        record(
            f"REST {attempt.path}",
            1,
            int(changed or shows_secret or succeeded),
            f"{attempt.method} {attempt.url} → {status} {body[:200]!r}"
            + (" (changed A's state)" if changed else ""),
        )
        before = after
    # Effects that go through Kafka (data, control events) land late.
    record("REST final state of A", 1, int(settled_fingerprint(stack, a) != before), "late")

    rows = [(path, n, leaked) for path, (n, leaked) in matrix.items()]
    table = format_matrix(rows, "tenant isolation matrix (B → A)")
    report(
        "tenant isolation",
        {
            "paths": len(rows),
            "attempts": sum(r[1] for r in rows),
            "leaks": sum(r[2] for r in rows),
        },
        table,
    )
    assert not leaks, "\n".join(leaks)


# -- MQTT -------------------------------------------------------------------------------

FILTERS = [
    "#",
    "+/#",
    "+",
    "+/+",
    "iso/#",
    "$share/g/#",
    "$share/g/+/#",
    "$SYS/#",
    "$share/g/iso/+",
]


def connect(stack: Stack, token: str, **kwargs: Any) -> Client:
    client = Client(stack.mqtt_port, token, **kwargs)
    assert client.connect() == 0
    return client


def drain(client: Client, within: float = 0.5) -> list[Any]:
    got = []
    while True:
        try:
            got.append(client.expect(timeout=within))
        except MqttTimeout:
            return got


def mqtt_rows(stack: Stack, a: Tenant, b: Tenant, record: Any) -> None:
    a_token, a2_token = a.devices[0]["token"], a.devices[1]["token"]
    b_token = b.devices[0]["token"]
    filters = [*FILTERS, f"{a.account['id']}/#", f"{a.devices[0]['device_id']}/#"]
    spies = {}
    for topic_filter in filters:
        spy = connect(stack, b_token, version=5)
        spy.subscribe(topic_filter, qos=1)
        spies[topic_filter] = spy
    a_watcher = connect(stack, a2_token, version=5)
    a_watcher.subscribe("#", qos=1)
    b_watcher = connect(stack, b_token, version=5)
    b_watcher.subscribe("#", qos=1)

    publisher = connect(stack, a_token, version=5)
    topics = ["iso/x", "iso/y/z", "x", f"{a.account['id']}/x", f"{a.devices[0]['device_id']}/x"]
    for topic in topics:
        assert publisher.publish(topic, f"{SECRET} {topic}", qos=1) == 0
    # Retained: set before B subscribes; wills: A's client vanishes without DISCONNECT.
    assert publisher.publish("iso/retained", f"{SECRET} retained", qos=1, retain=True) == 0
    will_client = Client(stack.mqtt_port, a_token, version=4, client_id=f"will-{SECRET[-6:]}")
    will_client.client.will_set("iso/will", f"{SECRET} will", qos=1)
    assert will_client.connect() == 0
    will_client.drop()
    # Positive control: A's own subscriber sees all of it (so the spies had their chance).
    seen = wait_for(
        lambda: (got := drain(a_watcher, 0.3)) and got, timeout=10, what="A's own traffic"
    )
    seen += drain(a_watcher, 1.0)
    assert {m.topic for m in seen} >= {*topics, "iso/retained", "iso/will"}, seen

    def secret(messages: list[Any]) -> int:
        return sum(1 for m in messages if SECRET.encode() in m.payload)

    for topic_filter, spy in spies.items():
        got = drain(spy, 0.2)  # A's subscriber has had everything: so would a leak
        record(f"MQTT subscribe {topic_filter}", len(topics) + 2, secret(got), "A's messages")
        spy.disconnect()

    late = connect(stack, b_token, version=4)
    late.subscribe("#", qos=1)
    record("MQTT retained (# after A set one)", 1, secret(drain(late, 0.5)), "retained")
    late.disconnect()
    got = drain(b_watcher, 0.2)
    record("MQTT will of A's client", 1, secret([m for m in got if m.topic == "iso/will"]))

    # The same client id in both accounts: no takeover, no session state crossing over.
    shared_id = f"shared-{SECRET[-6:]}"
    a_persistent = Client(stack.mqtt_port, a_token, version=4, client_id=shared_id, clean=False)
    assert a_persistent.connect() == 0
    a_persistent.subscribe("queued/#", qos=1)
    a_persistent.disconnect()
    assert publisher.publish("queued/x", f"{SECRET} queued", qos=1) == 0
    a_live = connect(stack, a2_token, version=5, client_id=shared_id)
    b_same = Client(stack.mqtt_port, b_token, version=4, client_id=shared_id, clean=False)
    assert b_same.connect() == 0
    got = drain(b_same, 0.5)
    record(
        "MQTT same client id (session state)",
        1,
        int(b_same.session_present or secret(got) > 0),
        f"session_present={b_same.session_present}",
    )
    record("MQTT same client id (takeover)", 1, int(a_live.disconnected.is_set()), "kicked")
    b_same.disconnect()
    a_live.disconnect()

    # Sanity: A's own subscriber saw A's traffic, B's own subscriber sees B's.
    b_pub = connect(stack, b_token, version=4)
    assert b_pub.publish("iso/b", "from b", qos=1) == 0
    assert any(m.payload == b"from b" for m in drain(b_watcher, 1.0))
    for client in (publisher, a_watcher, b_watcher, b_pub):
        client.disconnect()
