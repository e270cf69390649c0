"""The gateway with real MQTT clients (paho 3.1/3.1.1/5, gmqtt, mosquitto_pub/sub) over TCP,
TLS and WebSocket, against a real stack (Tansu + SQLite)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack
from sluice_gateway.codec import Connack, Connect, StreamDecoder, encode


@pytest.fixture
def account(sqlite_stack: Stack) -> dict[str, Any]:
    acc = sqlite_stack.create_account(f"gw-{uuid.uuid4().hex[:6]}")
    return acc


def device(stack: Stack, account: dict[str, Any], name: str = "d", **body: Any) -> dict[str, str]:
    return stack.create_device(account["token"], name=name, **body)


def token(
    stack: Stack, account: dict[str, Any], device_id: str, permission: str = "full", **body: Any
) -> str:
    with stack.client(account["token"]) as http:
        response = http.post(
            "/device/token", json={"device": device_id, "permission": permission, **body}
        )
        assert response.status_code == 201, response.text
        value: str = response.json()["result"]["token"]
        return value


def connected(stack: Stack, tok: str, version: int = 4, **kw: Any) -> Client:
    client = Client(stack.mqtt_port, tok, version=version, **kw)
    assert client.connect() == 0
    return client


# -- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize(("version", "expected"), [(3, 5), (4, 5), (5, 0x86)])
def test_bad_token_is_refused(sqlite_stack: Stack, version: int, expected: int) -> None:
    client = Client(sqlite_stack.mqtt_port, "not-a-token", version=version)
    assert client.connect() == expected


def test_token_as_username_with_empty_password(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    client = Client(sqlite_stack.mqtt_port, d["token"], username=None, version=4)
    assert client.connect() == 0
    client.disconnect()


def test_any_username_with_token_password(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    d = device(sqlite_stack, account)
    client = Client(sqlite_stack.mqtt_port, d["token"], username="whatever", version=5)
    assert client.connect() == 0
    client.disconnect()


def test_expired_token_is_refused(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    d = device(sqlite_stack, account)
    soon = token(sqlite_stack, account, d["device_id"], expire_time="2 seconds")
    assert Client(sqlite_stack.mqtt_port, soon, version=5).connect() == 0
    time.sleep(2.2)
    assert Client(sqlite_stack.mqtt_port, soon, version=5).connect() == 0x87


def test_inactive_device_is_refused(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    d = device(sqlite_stack, account, active=False)
    assert Client(sqlite_stack.mqtt_port, d["token"], version=4).connect() == 5


def raw_connect(port: int, packet: Connect, version: int = 4) -> list[object]:
    """Send one CONNECT over a plain socket; return what the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(encode(packet, packet.protocol_level))
        decoder = StreamDecoder(protocol_level=version)
        packets: list[object] = []
        while not packets:
            data = sock.recv(4096)
            if not data:
                break
            packets += decoder.feed(data)
        return packets


def test_empty_client_id_needs_clean_session_on_311(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    connect = Connect(4, "", clean_start=False, username="Token", password=d["token"].encode())
    assert raw_connect(sqlite_stack.mqtt_port, connect) == [Connack(False, 2)]
    v5 = Client(sqlite_stack.mqtt_port, d["token"], version=5)
    assert v5.connect() == 0
    assert v5.connack_properties.AssignedClientIdentifier.startswith("sluice-")
    v5.disconnect()


# -- publish / subscribe ------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_subscribe_round_trip(
    sqlite_stack: Stack, account: dict[str, Any], version: int, qos: int
) -> None:
    d = device(sqlite_stack, account)
    sub = connected(sqlite_stack, d["token"], version, client_id=f"sub-{version}-{qos}")
    granted = sub.subscribe("plant/+/temp", qos=qos)
    assert granted == [qos]
    pub = connected(sqlite_stack, d["token"], version, client_id=f"pub-{version}-{qos}")
    assert pub.publish("plant/7/temp", b"\x00\x01binary", qos=qos) == 0
    msg = sub.expect()
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == (
        "plant/7/temp",
        b"\x00\x01binary",
        qos,
        False,
    )
    pub.disconnect()
    sub.disconnect()


def test_overlapping_subscriptions_deliver_one_copy_at_highest_qos(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    sub = connected(sqlite_stack, d["token"], 4)
    sub.subscribe("a/#", qos=0)
    sub.subscribe("a/+", qos=1)
    pub = connected(sqlite_stack, d["token"], 4)
    pub.publish("a/b", "x", qos=1)
    assert sub.expect().qos == 1
    sub.expect_none(0.5)


def test_dollar_topics_are_not_matched_by_wildcards(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    sub = connected(sqlite_stack, d["token"], 5)
    assert sub.subscribe("#", qos=0) == [0]
    pub = connected(sqlite_stack, d["token"], 5)
    # Clients may not publish to $-topics; the refusal is a reason code on MQTT 5.
    assert pub.publish("$SYS/x", "no", qos=1) == 0x87
    assert pub.publish("plain", "yes", qos=1) == 0
    assert sub.expect().topic == "plain"


def test_mosquitto_clients_every_protocol_version(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    for version in ("31", "311", "5"):
        sub = subprocess.Popen(
            [
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                str(sqlite_stack.mqtt_port),
                "-V",
                version,
                "-u",
                "Token",
                "-P",
                d["token"],
                "-t",
                f"cli/{version}",
                "-C",
                "1",
                "-q",
                "1",
                "-W",
                "10",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # let the subscription land before publishing
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                str(sqlite_stack.mqtt_port),
                "-V",
                version,
                "-u",
                "Token",
                "-P",
                d["token"],
                "-t",
                f"cli/{version}",
                "-m",
                f"hello {version}",
                "-q",
                "1",
            ],
            check=True,
            timeout=10,
        )
        out, _ = sub.communicate(timeout=15)
        assert out.strip() == f"hello {version}"
        assert sub.returncode == 0


def test_gmqtt_v5_round_trip_with_properties(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    import gmqtt

    d = device(sqlite_stack, account)

    async def scenario() -> dict[str, Any]:
        got: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def on_message(
            _client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
        ) -> int:
            if not got.done():
                got.set_result(
                    {"topic": topic, "payload": payload, "qos": qos, "props": properties}
                )
            return 0

        sub = gmqtt.Client("gmqtt-sub")
        sub.set_auth_credentials("Token", d["token"])
        sub.on_message = on_message
        await sub.connect("127.0.0.1", sqlite_stack.mqtt_port, version=gmqtt.constants.MQTTv50)
        sub.subscribe("req/#", qos=1, subscription_identifier=42)
        await asyncio.sleep(0.3)
        pub = gmqtt.Client("gmqtt-pub")
        pub.set_auth_credentials("Token", d["token"])
        await pub.connect("127.0.0.1", sqlite_stack.mqtt_port, version=gmqtt.constants.MQTTv50)
        pub.publish(
            "req/1",
            b"ping",
            qos=1,
            content_type="text/plain",
            response_topic="resp/1",
            correlation_data=b"c-1",
            user_property=("k", "v"),
        )
        result = await asyncio.wait_for(got, 10)
        await pub.disconnect()
        await sub.disconnect()
        return result

    result = asyncio.run(scenario())
    assert (result["topic"], result["payload"], result["qos"]) == ("req/1", b"ping", 1)
    props = result["props"]
    assert props["content_type"] == ["text/plain"]
    assert props["response_topic"] == ["resp/1"]
    assert props["correlation_data"] == [b"c-1"]
    assert props["user_property"] == [("k", "v")]
    assert props["subscription_identifier"] == [42]


# -- retained, will, persistent sessions ----------------------------------------------------


def test_retained_message_set_delivered_and_cleared(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    pub = connected(sqlite_stack, d["token"], 4)
    assert pub.publish("status/door", "open", qos=1, retain=True) == 0
    late = connected(sqlite_stack, d["token"], 4)
    late.subscribe("status/#", qos=1)
    msg = late.expect()
    assert (msg.topic, msg.payload, msg.retain) == ("status/door", b"open", True)
    assert pub.publish("status/door", "", qos=1, retain=True) == 0
    assert late.expect().payload == b""  # live subscribers see the clearing publish
    later = connected(sqlite_stack, d["token"], 4)
    later.subscribe("status/#", qos=1)
    later.expect_none(1.0)


def test_will_is_published_on_abnormal_disconnect(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    watcher = connected(sqlite_stack, d["token"], 4)
    watcher.subscribe("wills/#", qos=1)
    dying = Client(sqlite_stack.mqtt_port, d["token"], version=4, keepalive=5)
    dying.client.will_set("wills/dying", "gone", qos=1)
    assert dying.connect() == 0
    dying.drop()
    msg = watcher.expect()
    assert (msg.topic, msg.payload) == ("wills/dying", b"gone")


def test_will_is_not_published_on_clean_disconnect(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    watcher = connected(sqlite_stack, d["token"], 4)
    watcher.subscribe("wills2/#", qos=1)
    polite = Client(sqlite_stack.mqtt_port, d["token"], version=4)
    polite.client.will_set("wills2/polite", "gone", qos=1)
    assert polite.connect() == 0
    polite.disconnect()
    watcher.expect_none(1.0)


@pytest.mark.parametrize("version", [4, 5])
def test_persistent_session_queues_qos1_while_offline(
    sqlite_stack: Stack, account: dict[str, Any], version: int
) -> None:
    d = device(sqlite_stack, account)
    cid = f"persistent-{version}"
    kw: dict[str, Any] = {"client_id": cid, "clean": False}
    if version == 5:
        kw["session_expiry"] = 300
    sub = connected(sqlite_stack, d["token"], version, **kw)
    sub.subscribe("queue/#", qos=1)
    sub.disconnect()
    pub = connected(sqlite_stack, d["token"], version)
    for n in range(5):
        assert pub.publish("queue/x", f"m{n}", qos=1) == 0
    back = Client(sqlite_stack.mqtt_port, d["token"], version=version, **kw)
    assert back.connect() == 0
    assert back.session_present
    assert [back.expect().payload for _ in range(5)] == [f"m{n}".encode() for n in range(5)]


def test_clean_session_discards_state(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    d = device(sqlite_stack, account)
    first = connected(sqlite_stack, d["token"], 4, client_id="cleaner", clean=False)
    first.subscribe("gone/#", qos=1)
    first.disconnect()
    again = Client(sqlite_stack.mqtt_port, d["token"], version=4, client_id="cleaner", clean=True)
    assert again.connect() == 0
    assert not again.session_present


def test_session_takeover_disconnects_the_old_connection(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    old = connected(sqlite_stack, d["token"], 5, client_id="twin")
    new = connected(sqlite_stack, d["token"], 5, client_id="twin")
    assert old.wait_disconnected() == 0x8E
    new.disconnect()


# -- permissions and revocation -------------------------------------------------------------


def test_read_token_cannot_publish_and_write_token_cannot_subscribe(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    reader = token(sqlite_stack, account, d["device_id"], "read")
    writer = token(sqlite_stack, account, d["device_id"], "write")
    r5 = connected(sqlite_stack, reader, 5)
    assert r5.publish("x", "y", qos=1) == 0x87
    assert r5.subscribe("x", qos=1) == [1]
    w5 = connected(sqlite_stack, writer, 5)
    assert w5.subscribe("x", qos=1) == [0x87]
    assert w5.publish("x", "y", qos=1) == 0
    w3 = connected(sqlite_stack, writer, 4)
    assert w3.subscribe("x", qos=1) == [0x80]
    r3 = connected(sqlite_stack, reader, 4)
    r3.publish("x", "y", qos=1, wait=None)
    r3.wait_disconnected()  # 3.1.1 has no refusal code: the connection is closed


def test_deleted_token_disconnects_within_a_second(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    extra = token(sqlite_stack, account, d["device_id"])
    client = connected(sqlite_stack, extra, 5)
    bystander = connected(sqlite_stack, d["token"], 5)
    with sqlite_stack.client(account["token"]) as http:
        started = time.monotonic()
        assert http.delete(f"/device/token/{extra}").status_code == 200
    assert client.wait_disconnected(timeout=1.5) == 0x87
    assert time.monotonic() - started < 1.5
    assert not bystander.disconnected.is_set()
    assert Client(sqlite_stack.mqtt_port, extra, version=5).connect() == 0x86


def test_deactivated_device_is_disconnected(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    d = device(sqlite_stack, account)
    client = connected(sqlite_stack, d["token"], 5)
    with sqlite_stack.client(account["token"]) as http:
        assert http.put(f"/device/{d['device_id']}", json={"active": False}).status_code == 200
    assert client.wait_disconnected(timeout=1.5) == 0x98


# -- transports -------------------------------------------------------------------------------


def test_websocket_transport(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    d = device(sqlite_stack, account)
    ws = Client(sqlite_stack.ws_port, d["token"], version=4, transport="websockets")
    assert ws.connect() == 0
    ws.subscribe("ws/#", qos=1)
    tcp = connected(sqlite_stack, d["token"], 5)
    tcp.publish("ws/1", "over websocket", qos=1)
    assert ws.expect().payload == b"over websocket"
    assert ws.publish("ws/2", "from websocket", qos=2) == 0
    ws.disconnect()


def test_subscription_options_no_local_and_retain_as_published(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    me = connected(sqlite_stack, d["token"], 5)
    me.subscribe("echo/#", options=SubscribeOptions(qos=1, noLocal=True))
    me.subscribe("keep/#", options=SubscribeOptions(qos=1, retainAsPublished=True))
    me.publish("echo/1", "mine", qos=1)
    me.expect_none(0.7)
    other = connected(sqlite_stack, d["token"], 5)
    other.publish("keep/1", "flagged", qos=1, retain=True)
    assert me.expect().retain is True


def test_message_expiry_drops_stale_queued_messages(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    d = device(sqlite_stack, account)
    kw: dict[str, Any] = {"client_id": "expiring", "clean": False, "session_expiry": 300}
    sub = connected(sqlite_stack, d["token"], 5, **kw)
    sub.subscribe("exp/#", qos=1)
    sub.disconnect()
    pub = connected(sqlite_stack, d["token"], 5)
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 1
    pub.publish("exp/short", "stale", qos=1, properties=props)
    pub.publish("exp/long", "fresh", qos=1)
    time.sleep(1.5)
    back = connected(sqlite_stack, d["token"], 5, **kw)
    assert back.expect().payload == b"fresh"
    back.expect_none(0.5)


def test_unknown_protocol_level_is_refused(sqlite_stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", sqlite_stack.mqtt_port), timeout=5) as sock:
        # CONNECT with protocol level 6.
        sock.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([6, 2, 0, 60, 0, 0]))
        assert sock.recv(16)[:4] == bytes([0x20, 2, 0, 1])


def test_garbage_is_closed_without_a_reply(sqlite_stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", sqlite_stack.mqtt_port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert sock.recv(16) == b""


def test_client_survives_bad_neighbour(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    """A protocol error on one connection does not disturb another."""
    d = device(sqlite_stack, account)
    good = connected(sqlite_stack, d["token"], 4)
    with socket.create_connection(("127.0.0.1", sqlite_stack.mqtt_port), timeout=5) as sock:
        sock.sendall(b"\xff" * 64)
    good.subscribe("still/#", qos=1)
    good.publish("still/here", "ok", qos=1)
    assert good.expect().payload == b"ok"
