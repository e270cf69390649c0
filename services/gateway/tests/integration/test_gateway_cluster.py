"""Two gateway processes on one Kafka: cross-node delivery, shared retained state,
revocation and takeover on every node, a restart that keeps retained messages; TLS."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.embedded import free_port
from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack
from sluice.testing.tls import make_certificates


@pytest.fixture(scope="module")
def second(
    sqlite_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A second gateway (with TLS) beside the stack's own."""
    ca, cert, key = make_certificates(tmp_path_factory.mktemp("tls"))
    ports = {"mqtt": free_port(), "ws": free_port(), "mqtts": free_port()}
    sqlite_stack.add(
        "gateway-2",
        SLUICE_MQTT_PORT=str(ports["mqtt"]),
        SLUICE_WS_PORT=str(ports["ws"]),
        SLUICE_MQTTS_PORT=str(ports["mqtts"]),
        SLUICE_TLS_CERT=str(cert),
        SLUICE_TLS_KEY=str(key),
        SLUICE_NODE_ID=f"gw2-{uuid.uuid4().hex[:4]}",
    ).start()
    sqlite_stack.wait_ready(["gateway-2"])
    yield {**ports, "ca": str(ca)}
    sqlite_stack.processes.pop("gateway-2").stop()


@pytest.fixture
def dev(sqlite_stack: Stack) -> dict[str, Any]:
    account = sqlite_stack.create_account(f"cl-{uuid.uuid4().hex[:6]}")
    device = sqlite_stack.create_device(account["token"], name="node-test")
    return {"account": account, **device}


def test_publish_on_one_node_reaches_subscribers_on_the_other(
    sqlite_stack: Stack, second: dict[str, Any], dev: dict[str, Any]
) -> None:
    on_b = Client(second["mqtt"], dev["token"], version=5)
    assert on_b.connect() == 0
    on_b.subscribe("x/#", qos=1)
    on_a = Client(sqlite_stack.mqtt_port, dev["token"], version=4)
    assert on_a.connect() == 0
    for n in range(20):
        assert on_a.publish(f"x/{n}", f"m{n}", qos=1) == 0
    received = [on_b.expect().payload for _ in range(20)]
    assert received == [f"m{n}".encode() for n in range(20)]  # per-device order kept
    on_b.expect_none(0.5)  # exactly once: the origin node does not get its own copy back

    on_a.subscribe("y/#", qos=0)
    on_b.publish("y/1", "back", qos=1)
    assert on_a.expect().payload == b"back"


def test_other_accounts_on_the_other_node_see_nothing(
    sqlite_stack: Stack, second: dict[str, Any], dev: dict[str, Any]
) -> None:
    other = sqlite_stack.create_account("other-node-account")
    spy_device = sqlite_stack.create_device(other["token"], name="spy")
    spy = Client(second["mqtt"], spy_device["token"], version=5)
    assert spy.connect() == 0
    spy.subscribe("#", qos=1)
    pub = Client(sqlite_stack.mqtt_port, dev["token"], version=4)
    assert pub.connect() == 0
    pub.publish("secret/1", "nope", qos=1, retain=True)
    spy.expect_none(1.0)


def test_retained_message_is_shared_and_survives_a_gateway_restart(
    sqlite_stack: Stack, second: dict[str, Any], dev: dict[str, Any]
) -> None:
    pub = Client(sqlite_stack.mqtt_port, dev["token"], version=4)
    assert pub.connect() == 0
    assert pub.publish("state/valve", "closed", qos=1, retain=True) == 0
    pub.disconnect()
    time.sleep(0.5)  # the other node applies it from sluice.retained
    reader = Client(second["mqtt"], dev["token"], version=4)
    assert reader.connect() == 0
    reader.subscribe("state/#", qos=1)
    msg = reader.expect()
    assert (msg.topic, msg.payload, msg.retain) == ("state/valve", b"closed", True)
    reader.disconnect()

    sqlite_stack.restart("gateway-2")
    after = Client(second["mqtt"], dev["token"], version=4)
    assert after.connect() == 0
    after.subscribe("state/#", qos=1)
    assert after.expect().payload == b"closed"


def test_revocation_disconnects_sessions_on_every_node(
    sqlite_stack: Stack, second: dict[str, Any], dev: dict[str, Any]
) -> None:
    account = dev["account"]
    with sqlite_stack.client(account["token"]) as http:
        extra = http.post("/device/token", json={"device": dev["device_id"]}).json()["result"][
            "token"
        ]
    a = Client(sqlite_stack.mqtt_port, extra, version=5)
    b = Client(second["mqtt"], extra, version=5)
    assert a.connect() == 0
    assert b.connect() == 0
    with sqlite_stack.client(account["token"]) as http:
        assert http.delete(f"/device/token/{extra}").status_code == 200
    assert a.wait_disconnected(timeout=1.5) == 0x87
    assert b.wait_disconnected(timeout=1.5) == 0x87


def test_session_takeover_across_nodes(
    sqlite_stack: Stack, second: dict[str, Any], dev: dict[str, Any]
) -> None:
    first = Client(sqlite_stack.mqtt_port, dev["token"], version=5, client_id="roamer")
    assert first.connect() == 0
    again = Client(second["mqtt"], dev["token"], version=5, client_id="roamer")
    assert again.connect() == 0
    assert first.wait_disconnected(timeout=3) == 0x8E
    assert not again.disconnected.is_set()


def test_tls_listener_with_paho_and_mosquitto(second: dict[str, Any], dev: dict[str, Any]) -> None:
    secure = Client(second["mqtts"], dev["token"], version=5, tls_ca=second["ca"], host="localhost")
    assert secure.connect() == 0
    secure.subscribe("tls/#", qos=1)
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "localhost",
            "-p",
            str(second["mqtts"]),
            "--cafile",
            second["ca"],
            "-u",
            "Token",
            "-P",
            dev["token"],
            "-t",
            "tls/1",
            "-m",
            "encrypted",
            "-q",
            "1",
        ],
        check=True,
        timeout=10,
    )
    assert secure.expect().payload == b"encrypted"


def test_plain_mqtt_on_the_tls_port_is_refused(second: dict[str, Any], dev: dict[str, Any]) -> None:
    plain = Client(second["mqtts"], dev["token"], version=4)
    with pytest.raises(Exception):  # noqa: B017 - the handshake fails in paho's own way
        plain.connect(timeout=3)


def test_stack_logs_have_no_tracebacks(sqlite_stack: Stack) -> None:
    for name, proc in sqlite_stack.processes.items():
        text = Path(proc.log_path).read_text(errors="replace")
        assert "Traceback" not in text, f"{name} logged a traceback:\n{sqlite_stack.tail(proc, 60)}"
