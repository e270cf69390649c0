"""A blocking paho-mqtt wrapper for tests: connect, publish, wait for acks, collect messages."""

from __future__ import annotations

import queue
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Any = None


# paho reports a 3.x CONNACK return code as the MQTT 5 reason code it corresponds to.
V3_RETURN_CODES = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


class MqttTimeout(AssertionError):
    pass


class Client:
    """One paho client on its own network thread. ``version`` is 3 (3.1), 4 (3.1.1) or 5."""

    def __init__(
        self,
        port: int,
        token: str | None,
        *,
        client_id: str = "",
        version: int = 4,
        clean: bool = True,
        host: str = "127.0.0.1",
        transport: str = "tcp",
        tls_ca: str | None = None,
        username: str | None = "Token",
        keepalive: int = 30,
        session_expiry: int | None = None,
        connect_properties: Properties | None = None,
    ) -> None:
        protocol = {3: paho.MQTTv31, 4: paho.MQTTv311, 5: paho.MQTTv5}[version]
        kwargs: dict[str, Any] = {
            "client_id": client_id,
            "protocol": protocol,
            "transport": transport,
        }
        if version != 5:
            kwargs["clean_session"] = clean
        self.client = paho.Client(CallbackAPIVersion.VERSION2, **kwargs)
        self.version = version
        self.host, self.port, self.keepalive = host, port, keepalive
        self.clean = clean
        self.session_expiry = session_expiry
        self.connect_properties = connect_properties
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca, cert_reqs=ssl.CERT_REQUIRED)
        if token is not None or username is not None:
            if username is None:
                self.client.username_pw_set(token, None)
            else:
                self.client.username_pw_set(username, token)
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connack: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
        self.acks: dict[int, threading.Event] = {}
        self.ack_codes: dict[int, int] = {}
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_code: int | None = None
        self.disconnect_properties: Any = None
        self._lock = threading.Lock()
        c = self.client
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect

    # callbacks (paho's thread)
    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, props: Any) -> None:
        code = int(reason.value)
        if self.version != 5:
            code = V3_RETURN_CODES.get(code, code)
        self.connack.put((code, bool(flags.session_present), props))

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        self.messages.put(
            Received(msg.topic, msg.payload, msg.qos, bool(msg.retain), msg.properties)
        )

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        with self._lock:
            self.ack_codes[mid] = int(reason.value)
            self.acks.setdefault(mid, threading.Event()).set()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: Any, _props: Any) -> None:
        self.subacks.put([int(code.value) for code in codes])

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, props: Any) -> None:
        self.disconnect_code = int(reason.value)
        self.disconnect_properties = props
        self.disconnected.set()

    # blocking API
    def connect(self, timeout: float = 10) -> int:
        """Connect and return the CONNACK code (0 = accepted)."""
        props = self.connect_properties
        if self.version == 5 and self.session_expiry is not None:
            props = props or Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.session_expiry
        kwargs: dict[str, Any] = {"keepalive": self.keepalive}
        if self.version == 5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = props
        self.disconnected.clear()
        self.client.connect(self.host, self.port, **kwargs)
        self.client.loop_start()
        try:
            code, self.session_present, self.connack_properties = self.connack.get(timeout=timeout)
        except queue.Empty:
            self.client.loop_stop()
            raise MqttTimeout("no CONNACK") from None
        if code != 0:
            # paho would keep reconnecting a refused client in the background.
            self.client.disconnect()
            self.client.loop_stop()
        return code

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        wait: float | None = 10,
    ) -> int:
        """Publish; for QoS 1/2 wait for the ack and return its reason code (0 = success)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos == 0 or wait is None:
            return 0
        with self._lock:
            event = self.acks.setdefault(info.mid, threading.Event())
        if not event.wait(wait):
            raise MqttTimeout(f"no acknowledgement for message {info.mid} within {wait}s")
        return self.ack_codes.get(info.mid, 0)

    def subscribe(
        self,
        topic_filter: str,
        qos: int = 0,
        options: Any = None,
        properties: Properties | None = None,
        timeout: float = 10,
    ) -> list[int]:
        if self.version == 5:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            opts = options or SubscribeOptions(qos=qos)
            self.client.subscribe(topic_filter, options=opts, properties=properties)
        else:
            self.client.subscribe(topic_filter, qos)
        try:
            return self.subacks.get(timeout=timeout)
        except queue.Empty:
            raise MqttTimeout("no SUBACK") from None

    def expect(self, timeout: float = 10) -> Received:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise MqttTimeout(f"no message within {timeout}s") from None

    def expect_none(self, within: float = 1.0) -> None:
        try:
            msg = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")

    def wait_disconnected(self, timeout: float = 5) -> int | None:
        if not self.disconnected.wait(timeout):
            raise MqttTimeout(f"still connected after {timeout}s")
        return self.disconnect_code

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT (the broker sees a lost connection: will, session kept)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def wait_for(
    predicate: Any, timeout: float = 15, interval: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
