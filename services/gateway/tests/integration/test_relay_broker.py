"""The MQTT relay against a real Mosquitto the test starts: messages published there land in
the right device's bucket through the real stack; the relay survives a broker restart and a
broker that is down without losing QoS 1 messages; wrong credentials show in the status
until fixed through the API; ``mqtt`` actions reach subscribers on the external broker; and
a relay moves to another gateway when its owner dies."""

from __future__ import annotations

import asyncio
import getpass
import json
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from sluice.embedded import EmbeddedKafka, free_port
from sluice.testing.mqtt import Client, wait_for
from sluice.testing.stack import Stack
from sluice.testing.tls import make_certificates

MOSQUITTO = "/usr/sbin/mosquitto"
USER, PASSWORD = "sluice", "s3cret-relay"


class Mosquitto:
    """A Mosquitto of our own on free ports, with persistence (sessions survive restarts)."""

    def __init__(self, directory: Path, *, secured: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.secured = secured
        self.tls_port = free_port() if secured else None
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {directory}/",
            f"user {getpass.getuser()}",
            f"log_dest file {directory}/mosquitto.log",
            "log_type all",
        ]
        if secured:
            self.ca, cert, key = make_certificates(directory / "tls")
            self.cert, self.key = cert, key
            passwords = directory / "passwd"
            passwords.touch(mode=0o600)
            subprocess.run(
                ["mosquitto_passwd", "-b", str(passwords), USER, PASSWORD],
                check=True,
                capture_output=True,
            )
            lines = [
                *lines,
                "allow_anonymous false",
                f"password_file {passwords}",
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.ca}",
                f"certfile {cert}",
                f"keyfile {key}",
                "require_certificate true",
            ]
        else:
            lines.append("allow_anonymous true")
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._listening(), 10, what="mosquitto to listen")

    def _listening(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its sessions and queued messages, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(15)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def client(self, **kw: Any) -> Client:
        if self.secured:
            return Client(self.port, PASSWORD, username=USER, **kw)
        return Client(self.port, None, username=None, **kw)


@pytest.fixture(scope="module")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto-secured"), secured=True)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def plain_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    yield broker  # not started: each test decides when the broker is up
    broker.stop()


# -- REST helpers -----------------------------------------------------------------
def device_with_serial(stack: Stack, account_token: str, name: str, serial: str) -> dict[str, Any]:
    device = stack.create_device(account_token, name=name)
    with stack.client(account_token) as http:
        response = http.post(
            "/device/token",
            json={"device": device["device_id"], "name": "relay", "serie_number": serial},
        )
        assert response.status_code == 201, response.text
    return device


def create_relay(stack: Stack, token: str, **body: Any) -> str:
    body.setdefault("name", "plant broker")
    body.setdefault("host", "127.0.0.1")
    with stack.client(token) as http:
        response = http.post("/relay", json=body)
        assert response.status_code == 201, response.text
        relay: str = response.json()["result"]["relay"]
        return relay


def relay_view(stack: Stack, token: str, relay: str) -> dict[str, Any]:
    with stack.client(token) as http:
        response = http.get(f"/relay/{relay}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["result"]
        return result


def wait_status(
    stack: Stack, token: str, relay: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    status: dict[str, Any] = {}

    def probe() -> bool:
        nonlocal status
        status = relay_view(stack, token, relay)["status"]
        return check(status)

    try:
        wait_for(probe, 60, 0.2, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {status}") from None
    return status


def values(stack: Stack, device_token: str, variable: str) -> list[Any]:
    with stack.client(device_token) as http:
        response = http.get("/data", params={"variable": variable, "qty": 1000})
        assert response.status_code == 200, response.text
        return [item["value"] for item in response.json()["result"]]


def item(variable: str, value: Any) -> str:
    return json.dumps({"variable": variable, "value": value})


# -- through the whole stack ------------------------------------------------------
@pytest.fixture(scope="module")
def plant(sqlite_stack: Stack, secured_broker: Mosquitto) -> dict[str, Any]:
    """An account with two serial-numbered devices, relayed from the secured broker over
    TLS with a client certificate, username and password."""
    stack, broker = sqlite_stack, secured_broker
    account = stack.create_account(f"relay-{uuid.uuid4().hex[:6]}")
    token = account["token"]
    tag = uuid.uuid4().hex[:6]
    boiler = device_with_serial(stack, token, "boiler", f"SN-B-{tag}")
    pump = device_with_serial(stack, token, "pump", f"SN-P-{tag}")
    for device in (boiler, pump):
        stack.insert_action(token, device["device_id"], "plant/+/data")
    relay = create_relay(
        stack,
        token,
        port=broker.tls_port,
        tls={
            "ca": broker.ca.read_text(),
            "cert": broker.cert.read_text(),
            "key": broker.key.read_text(),
        },
        username=USER,
        password=PASSWORD,
        version="5.0",
        subscriptions=[{"topic": "plant/+/data", "qos": 1}, {"topic": "plant/+/alarm", "qos": 1}],
        mapping={"type": "topic", "segment": 1},
        downlink_topic="plant/{serial}/{topic}",
    )
    wait_status(stack, token, relay, lambda s: s["connected"], "the relay to connect")
    return {"token": token, "relay": relay, "boiler": boiler, "pump": pump, "tag": tag}


def test_relayed_messages_land_in_the_right_devices_bucket(
    sqlite_stack: Stack, secured_broker: Mosquitto, plant: dict[str, Any]
) -> None:
    stack, tag = sqlite_stack, plant["tag"]
    publisher = secured_broker.client(version=4)
    assert publisher.connect() == 0
    assert publisher.publish(f"plant/SN-B-{tag}/data", item("temperature", 71.5), qos=1) == 0
    assert publisher.publish(f"plant/SN-P-{tag}/data", item("temperature", 12), qos=1) == 0
    assert publisher.publish("plant/SN-NOBODY/data", item("temperature", 99), qos=1) == 0
    assert publisher.publish(f"plant/SN-P-{tag}/data", item("pressure", 2.5), qos=0) == 0
    publisher.disconnect()

    wait_for(lambda: values(stack, plant["pump"]["token"], "pressure"), 60, what="pump data")
    wait_for(lambda: values(stack, plant["boiler"]["token"], "temperature"), 60, what="boiler")
    assert values(stack, plant["boiler"]["token"], "temperature") == [71.5]
    assert values(stack, plant["pump"]["token"], "temperature") == [12]

    # The message for an unknown serial is refused, counted and explained.
    status = wait_status(
        stack, plant["token"], plant["relay"], lambda s: s["dropped"] >= 1, "the refusal"
    )
    assert "no device token has serie_number 'SN-NOBODY'" in status["last_error"]
    assert status["state"] == "connected"
    assert status["messages_in"] >= 3

    # Metrics on the gateway that owns it.
    port = stack.processes["gateway"].env["SLUICE_HEALTH_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    lines = [line for line in text.splitlines() if f'relay="{plant["relay"]}"' in line]
    connected = [line for line in lines if line.startswith("sluice_relay_connected{")]
    assert connected, text
    assert connected[0].endswith(" 1.0")
    assert any(line.startswith("sluice_relay_messages_in_total{") for line in lines)


def test_mqtt_action_reaches_a_subscriber_on_the_external_broker(
    sqlite_stack: Stack, secured_broker: Mosquitto, plant: dict[str, Any]
) -> None:
    stack, tag = sqlite_stack, plant["tag"]
    boiler = plant["boiler"]["device_id"]
    stack.create_action(
        plant["token"],
        name="boiler led",
        type="mqtt_topic",
        trigger=[{"device": boiler, "topic": "plant/+/alarm"}],
        action={"type": "mqtt", "device": boiler, "topic": "led", "payload": "red", "qos": 1},
    )
    # The actions service answers from its cached copy of the account's actions and learns
    # of a new one through sluice.control within about a second: an alarm handled before
    # then fires nothing. The copy is read in one query, so once it holds the pump's insert
    # action, created after the led action, it holds both: a stored pump alarm says so.
    stack.insert_action(plant["token"], plant["pump"]["device_id"], "plant/+/alarm")
    subscriber = secured_broker.client(version=4)
    assert subscriber.connect() == 0
    assert subscriber.subscribe(f"plant/SN-B-{tag}/#", qos=1) == [1]
    publisher = secured_broker.client(version=4)
    assert publisher.connect() == 0

    def actions_loaded() -> bool:
        assert publisher.publish(f"plant/SN-P-{tag}/alarm", item("probe", 1), qos=1) == 0
        return bool(values(stack, plant["pump"]["token"], "probe"))

    wait_for(actions_loaded, 60, 0.5, "the actions service to load the new actions")
    assert publisher.publish(f"plant/SN-B-{tag}/alarm", "overheat", qos=1) == 0
    alarm = subscriber.expect(10)  # the device's own alarm comes back first
    assert alarm.topic == f"plant/SN-B-{tag}/alarm"
    led = subscriber.expect(30)
    assert (led.topic, led.payload, led.qos) == (f"plant/SN-B-{tag}/led", b"red", 1)
    status = wait_status(
        stack, plant["token"], plant["relay"], lambda s: s["messages_out"] >= 1, "out count"
    )
    assert status["connected"]
    subscriber.disconnect()
    publisher.disconnect()


def test_wrong_credentials_are_reported_until_fixed_through_the_api(
    stack: Stack, secured_broker: Mosquitto
) -> None:
    """On SQLite and PostgreSQL; the device is found by a serial in the JSON payload."""
    account = stack.create_account(f"relay-auth-{uuid.uuid4().hex[:6]}")
    serial = f"SN-M-{uuid.uuid4().hex[:6]}"
    device = device_with_serial(stack, account["token"], "meter", serial)
    stack.insert_action(account["token"], device["device_id"], "meter/#")
    relay = create_relay(
        stack,
        account["token"],
        port=secured_broker.port,
        username=USER,
        password="not-the-password",
        subscriptions=[{"topic": "meter/#", "qos": 1}],
        mapping={"type": "json", "field": "0.value"},
    )
    status = wait_status(
        stack, account["token"], relay, lambda s: s["state"] == "error", "the refusal"
    )
    assert not status["connected"]
    assert "check the relay's username and password" in status["last_error"]
    view = relay_view(stack, account["token"], relay)
    assert view["password_set"] is True
    assert "password" not in view  # never echoed back

    with stack.client(account["token"]) as http:
        response = http.put(f"/relay/{relay}", json={"password": PASSWORD})
        assert response.status_code == 200, response.text
    wait_status(stack, account["token"], relay, lambda s: s["connected"], "the fixed relay")
    publisher = secured_broker.client(version=5)
    assert publisher.connect() == 0
    reading = [{"variable": "serial", "value": serial}, {"variable": "kwh", "value": 42}]
    assert publisher.publish("meter/1", json.dumps(reading), qos=1) == 0
    publisher.disconnect()
    wait_for(lambda: values(stack, device["token"], "kwh") == [42], 60, what="the reading")


def test_broker_down_then_restarted_loses_no_qos1_message(
    sqlite_stack: Stack, plain_broker: Mosquitto
) -> None:
    stack, broker = sqlite_stack, plain_broker
    account = stack.create_account(f"relay-restart-{uuid.uuid4().hex[:6]}")
    device = stack.create_device(account["token"], name="line")
    stack.insert_action(account["token"], device["device_id"], "line/#")
    relay = create_relay(
        stack,
        account["token"],
        port=broker.port,
        subscriptions=[{"topic": "line/#", "qos": 1}],
        mapping={"type": "device", "device": device["device_id"]},
    )
    # Nothing listens yet: the status says so.
    status = wait_status(
        stack, account["token"], relay, lambda s: s["state"] == "error", "cannot reach"
    )
    assert f"cannot reach 127.0.0.1:{broker.port}" in status["last_error"]

    broker.start()
    wait_status(stack, account["token"], relay, lambda s: s["connected"], "the first connect")
    publisher = broker.client(version=4, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    assert publisher.connect() == 0
    for n in range(150):  # the last ones are still in flight to the relay when Mosquitto stops
        assert publisher.publish("line/1", item("seq", n), qos=1) == 0
    publisher.disconnect()
    broker.stop()
    wait_status(stack, account["token"], relay, lambda s: not s["connected"], "the outage")

    broker.start()  # publish at once: the relay is probably still waiting to reconnect
    publisher = broker.client(version=4, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    assert publisher.connect() == 0
    for n in range(150, 200):
        assert publisher.publish("line/1", item("seq", n), qos=1) == 0
    publisher.disconnect()

    wanted = set(range(200))
    wait_for(
        lambda: wanted <= set(values(stack, device["token"], "seq")), 90, what="all 200 values"
    )
    # The relay's status (connected, counters) is published apart from the data: wait for it.
    status = wait_status(
        stack,
        account["token"],
        relay,
        lambda s: s["connected"] and s["messages_in"] >= 200,
        "reconnect and the count of all 200",
    )
    assert status["messages_in"] >= 200

    # A new mapping applies to the next message, without reconnecting.
    spare = stack.create_device(account["token"], name="spare line")
    stack.insert_action(account["token"], spare["device_id"], "line/#")
    with stack.client(account["token"]) as http:
        body = {"mapping": {"type": "device", "device": spare["device_id"]}}
        assert http.put(f"/relay/{relay}", json=body).status_code == 200
    publisher = broker.client(version=4, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    assert publisher.connect() == 0

    def moved() -> bool:
        assert publisher.publish("line/1", item("probe", 1), qos=1) == 0
        return bool(values(stack, spare["token"], "probe"))

    wait_for(moved, 60, 0.5, "a message on the new device")
    publisher.disconnect()
    after = relay_view(stack, account["token"], relay)["status"]
    assert after["connected_at"] == status["connected_at"]


def test_relayed_messages_count_as_the_accounts_publishes(
    sqlite_stack: Stack, plain_broker: Mosquitto
) -> None:
    """Relayed messages are the device's publishes: past the plan's publishes per minute
    they are refused, counted and explained, like a device's own (but still acknowledged to
    the external broker, which has no use for Sluice's quota)."""
    stack, broker = sqlite_stack, plain_broker
    plan = stack.create_plan(f"five-{uuid.uuid4().hex[:6]}", mqtt_publish_per_min=5)
    account = stack.create_account(f"relay-quota-{uuid.uuid4().hex[:6]}", plan=plan)
    device = stack.create_device(account["token"], name="meter")
    stack.insert_action(account["token"], device["device_id"], "meter/#")
    broker.start()
    relay = create_relay(
        stack,
        account["token"],
        port=broker.port,
        subscriptions=[{"topic": "meter/#", "qos": 1}],
        mapping={"type": "device", "device": device["device_id"]},
    )
    wait_status(stack, account["token"], relay, lambda s: s["connected"], "the relay")
    publisher = broker.client(version=4, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    assert publisher.connect() == 0
    for n in range(8):  # all within one minute's window
        assert publisher.publish("meter/1", item("seq", n), qos=1) == 0
    publisher.disconnect()
    status = wait_status(
        stack, account["token"], relay, lambda s: s["dropped"] >= 3, "the refusals"
    )
    assert "the account's publishes per minute are used up ('meter/1'" in status["last_error"]
    wait_for(lambda: len(values(stack, device["token"], "seq")) >= 5, 60, what="5 stored")
    time.sleep(2)  # nothing more arrives
    assert sorted(values(stack, device["token"], "seq")) == [0, 1, 2, 3, 4]
    assert status["connected"]


def test_definitions_the_gateway_could_not_run_are_refused(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    account = stack.create_account(f"relay-bad-{uuid.uuid4().hex[:6]}")
    good = {
        "name": "x",
        "host": "127.0.0.1",
        "subscriptions": [{"topic": "a/#", "qos": 1}],
        "mapping": {"type": "topic", "segment": 0},
    }
    cases = [
        ({"subscriptions": [{"topic": "a/#/b"}]}, "subscriptions 0: topic '#' must be the last"),
        ({"mapping": {"type": "device", "device": "nope"}}, "mapping.device: device nope"),
        ({"mapping": {"type": "json", "field": "a..b"}}, "mapping.field"),
        ({"downlink_topic": "x/{name}"}, "downlink_topic: unknown placeholder {name}"),
        ({"host": "mqtt://broker"}, "without a scheme"),
        ({"tls": {"ca": "not a pem"}}, "tls.ca is not a PEM certificate"),
        ({"tls": {"cert": "x"}}, "tls.cert and tls.key go together"),
        ({"password": "p"}, "set username"),
    ]
    with stack.client(account["token"]) as http:
        for change, message in cases:
            response = http.post("/relay", json={**good, **change})
            assert response.status_code == 400, (change, response.text)
            assert message in response.json()["message"], (change, response.text)
        assert http.get("/relay").json()["result"] == []


# -- ownership across gateways ----------------------------------------------------
async def _uplink_payloads(bootstrap: str, topic: str, device: str) -> set[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        found: set[bytes] = set()
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if dict(record.headers).get("device") == device.encode():
                        found.add(record.value or b"")
        return found
    finally:
        await consumer.stop()


def test_a_relay_moves_to_another_gateway_when_its_owner_dies(
    kafka: EmbeddedKafka, sqlite_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    stack = Stack(kafka.bootstrap, sqlite_url, topic_prefix, tmp_path / "logs", services=())
    stack.log_dir.mkdir(parents=True)
    names = ["api", "gateway-a", "gateway-b"]
    stack.add("api")
    for name in names[1:]:
        stack.add(
            name,
            SLUICE_MQTT_PORT=str(free_port()),
            SLUICE_WS_PORT=str(free_port()),
            SLUICE_NODE_ID=name,
        )
    try:
        for name in names:
            stack.processes[name].start()
        stack.wait_ready(names)
        account = stack.create_account("takeover")
        device = stack.create_device(account["token"], name="press")
        relay = create_relay(
            stack,
            account["token"],
            port=broker.port,
            subscriptions=[{"topic": "press/#", "qos": 1}],
            mapping={"type": "device", "device": device["device_id"]},
        )
        owner = wait_status(
            stack, account["token"], relay, lambda s: s["connected"], "the first owner"
        )["node"]
        assert owner in names
        publisher = broker.client(version=4, client_id="press-publisher")
        assert publisher.connect() == 0
        for n in range(100):  # Mosquitto acks the publisher; the relay acks after Kafka
            assert publisher.publish("press/1", f"m{n}", qos=1) == 0
        # No goodbye, with messages still in flight to the relay: what it had not
        # acknowledged, Mosquitto redelivers to the next owner.
        stack.processes[owner].kill()
        for n in range(100, 120):  # queued by Mosquitto for the relay's persistent session
            assert publisher.publish("press/1", f"m{n}", qos=1) == 0
        status = wait_status(
            stack,
            account["token"],
            relay,
            lambda s: s["connected"] and s["node"] not in (owner, None),
            "the takeover",
        )
        survivor = status["node"]
        for n in range(120, 130):
            assert publisher.publish("press/1", f"m{n}", qos=1) == 0
        publisher.disconnect()

        wanted = {f"m{n}".encode() for n in range(130)}
        topic = topic_prefix + "uplink"
        deadline = time.monotonic() + 60
        found: set[bytes] = set()
        while not wanted <= found and time.monotonic() < deadline:
            found = asyncio.run(_uplink_payloads(kafka.bootstrap, topic, device["device_id"]))
        assert wanted <= found, f"missing {sorted(wanted - found)} (owner {owner} → {survivor})"
    finally:
        stack.stop()
        broker.stop()
