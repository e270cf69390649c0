"""Interoperability with paho-mqtt, the most used Python client, without a broker.

Paho's socket is one end of a socketpair: what it writes is decoded by our codec, and what our
encoder writes is read by paho. Covers MQTT 3.1, 3.1.1 and 5.0 with properties.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.subscribeoptions import SubscribeOptions

from sluice_gateway.codec import (
    PUBACK,
    Connack,
    Connect,
    Packet,
    Properties,
    Puback,
    Publish,
    StreamDecoder,
    Suback,
    Subscribe,
    Subscription,
    Will,
    encode,
    encode_ack,
)


class Broker:
    """The server side of the socketpair, speaking through our codec."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(2)
        self.decoder = StreamDecoder()

    def receive(self, count: int) -> list[Packet]:
        packets: list[Packet] = []
        while len(packets) < count:
            data = self.sock.recv(65536)
            assert data, "paho closed the connection"
            packets += self.decoder.feed(data)
        assert len(packets) == count
        return packets

    def send(self, *data: bytes) -> None:
        self.sock.sendall(b"".join(data))


@contextmanager
def paho_client(protocol: int) -> Iterator[tuple[mqtt.Client, Broker]]:
    server_end, client_end = socket.socketpair()

    class SocketpairClient(mqtt.Client):
        def _create_socket(self) -> Any:
            return client_end

    client = SocketpairClient(CallbackAPIVersion.VERSION2, client_id="paho-dev", protocol=protocol)
    try:
        yield client, Broker(server_end)
    finally:
        server_end.close()
        client_end.close()


def paho_properties(packet_type: int, **values: Any) -> PahoProperties:
    props = PahoProperties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


@pytest.mark.parametrize(("protocol", "name"), [(mqtt.MQTTv31, "MQIsdp"), (mqtt.MQTTv311, "MQTT")])
def test_paho_3x_connect_subscribe_publish(protocol: int, name: str) -> None:
    with paho_client(protocol) as (client, broker):
        client.username_pw_set("Token", "device-token")
        client.will_set("devices/paho-dev/status", b"offline", qos=1, retain=True)
        client.connect("broker.invalid", 1883, keepalive=30)

        [connect] = broker.receive(1)
        assert connect == Connect(
            protocol,
            "paho-dev",
            clean_start=True,
            keepalive=30,
            username="Token",
            password=b"device-token",
            will=Will("devices/paho-dev/status", b"offline", 1, True),
            protocol_name=name,
        )

        broker.send(encode(Connack(False, 0), protocol))
        client.loop_read()
        assert client.is_connected()

        _, sub_mid = client.subscribe([("devices/+/cmd", 1), ("alerts/#", 0)])
        assert sub_mid is not None
        info = client.publish("devices/paho-dev/up", b'{"t": 21.5}', qos=1)

        subscribe, publish = broker.receive(2)
        assert subscribe == Subscribe(
            sub_mid, [Subscription("devices/+/cmd", 1), Subscription("alerts/#", 0)]
        )
        assert publish == Publish("devices/paho-dev/up", b'{"t": 21.5}', qos=1, packet_id=info.mid)

        # Paho reads what we encode: SUBACK, PUBACK, and a QoS 1 PUBLISH it must acknowledge.
        received: list[mqtt.MQTTMessage] = []
        client.on_message = lambda _client, _userdata, message: received.append(message)
        broker.send(
            encode(Suback(sub_mid, [1, 0]), protocol),
            encode_ack(PUBACK, info.mid, protocol),
            encode(Publish("devices/paho-dev/cmd", b"reboot", qos=1, packet_id=77), protocol),
        )
        for _ in range(3):
            client.loop_read()  # paho handles at most a packet or two per call
        assert info.is_published()
        assert [(m.topic, m.payload, m.qos) for m in received] == [
            ("devices/paho-dev/cmd", b"reboot", 1)
        ]
        assert broker.receive(1) == [Puback(77)]


def test_paho_5_connect_subscribe_publish_with_properties() -> None:
    with paho_client(mqtt.MQTTv5) as (client, broker):
        client.username_pw_set("Token", "device-token")
        client.will_set(
            "devices/paho-dev/status",
            b"offline",
            qos=1,
            properties=paho_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=10),
        )
        client.connect(
            "broker.invalid",
            1883,
            keepalive=45,
            clean_start=True,
            properties=paho_properties(
                PacketTypes.CONNECT,
                SessionExpiryInterval=3600,
                ReceiveMaximum=50,
                UserProperty=[("fw", "1.2.3")],
            ),
        )

        [connect] = broker.receive(1)
        assert connect == Connect(
            5,
            "paho-dev",
            clean_start=True,
            keepalive=45,
            username="Token",
            password=b"device-token",
            will=Will(
                "devices/paho-dev/status", b"offline", 1, False, Properties(will_delay_interval=10)
            ),
            properties=Properties(
                session_expiry_interval=3600, receive_maximum=50, user_properties=[("fw", "1.2.3")]
            ),
        )

        connected: list[Any] = []
        client.on_connect = lambda _c, _u, flags, reason, props: connected.append((reason, props))
        broker.send(
            encode(
                Connack(
                    False,
                    0,
                    Properties(
                        topic_alias_maximum=10, retain_available=1, assigned_client_identifier="x"
                    ),
                ),
                5,
            )
        )
        client.loop_read()
        [(reason, props)] = connected
        assert reason == 0
        assert props.TopicAliasMaximum == 10
        assert props.AssignedClientIdentifier == "x"

        _, sub_mid = client.subscribe(
            [
                ("devices/+/cmd", SubscribeOptions(qos=1, noLocal=True, retainHandling=2)),
                ("$share/workers/jobs", SubscribeOptions(qos=2, retainAsPublished=True)),
            ],
            properties=paho_properties(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=42),
        )
        assert sub_mid is not None
        info = client.publish(
            "devices/paho-dev/up",
            b"\x01\x02",
            qos=2,
            retain=True,
            properties=paho_properties(
                PacketTypes.PUBLISH,
                PayloadFormatIndicator=0,
                MessageExpiryInterval=120,
                ContentType="application/octet-stream",
                ResponseTopic="devices/paho-dev/reply",
                CorrelationData=b"req-1",
                UserProperty=[("a", "1"), ("a", "2")],
            ),
        )

        subscribe, publish = broker.receive(2)
        assert subscribe == Subscribe(
            sub_mid,
            [
                Subscription("devices/+/cmd", 1, no_local=True, retain_handling=2),
                Subscription("$share/workers/jobs", 2, retain_as_published=True),
            ],
            Properties(subscription_identifiers=[42]),
        )
        assert publish == Publish(
            "devices/paho-dev/up",
            b"\x01\x02",
            qos=2,
            retain=True,
            packet_id=info.mid,
            properties=Properties(
                payload_format_indicator=0,
                message_expiry_interval=120,
                content_type="application/octet-stream",
                response_topic="devices/paho-dev/reply",
                correlation_data=b"req-1",
                user_properties=[("a", "1"), ("a", "2")],
            ),
        )

        # Paho reads an MQTT 5 PUBLISH with properties from us and acknowledges it.
        received: list[mqtt.MQTTMessage] = []
        client.on_message = lambda _client, _userdata, message: received.append(message)
        broker.send(
            encode(
                Publish(
                    "devices/paho-dev/cmd",
                    b"on",
                    qos=1,
                    packet_id=9,
                    properties=Properties(
                        subscription_identifiers=[42], user_properties=[("by", "api")]
                    ),
                ),
                5,
            )
        )
        client.loop_read()
        [message] = received
        assert (message.topic, message.payload) == ("devices/paho-dev/cmd", b"on")
        assert message.properties is not None
        assert message.properties.SubscriptionIdentifier == [42]
        assert message.properties.UserProperty == [("by", "api")]
        assert broker.receive(1) == [Puback(9)]
