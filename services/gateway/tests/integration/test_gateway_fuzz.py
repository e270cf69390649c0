"""Hostile bytes against a running gateway: ≥ 100k random and mutated packets.

Each fuzz connection logs in properly, then sends mutated packets. The gateway must close
a connection whose input is invalid (MQTT 5: after a DISCONNECT with a reason code),
answer what is still valid, and keep serving a well-behaved client throughout.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field

import pytest

from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack
from sluice_gateway import codec as c
from sluice_gateway.codec import (
    Connect,
    Disconnect,
    Pingreq,
    Properties,
    ProtocolError,
    Puback,
    Publish,
    StreamDecoder,
    Subscribe,
    Subscription,
    Unsubscribe,
    encode,
)

TARGET_PACKETS = 100_000
DISCONNECT_REASONS = {
    c.MALFORMED_PACKET,
    c.PROTOCOL_ERROR,
    c.PACKET_TOO_LARGE,
    c.TOPIC_ALIAS_INVALID,
    c.TOPIC_NAME_INVALID,
    c.RECEIVE_MAXIMUM_EXCEEDED,
    c.NOT_AUTHORIZED,
    c.BAD_AUTHENTICATION_METHOD,
    c.TOPIC_FILTER_INVALID,
}


def seed_packets(version: int) -> list[bytes]:
    props = Properties(user_properties=[("k", "v")]) if version == 5 else None
    packets = [
        Publish("fuzz/a", b"payload", 0),
        Publish("fuzz/b", b"x" * 40, 1, packet_id=7, properties=props),
        Publish("fuzz/c", b"", 2, retain=True, packet_id=9),
        Subscribe(3, [Subscription("fuzz/#", 1)], properties=props),
        Unsubscribe(4, ["fuzz/#"]),
        Puback(11),
        Pingreq(),
    ]
    return [encode(p, version) for p in packets]


def mutate(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    buf = bytearray(data)
    if choice == 0 and buf:  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif choice == 1 and len(buf) > 1:  # truncate (the rest arrives as the next packet's start)
        del buf[rng.randrange(1, len(buf)) :]
    elif choice == 2:  # insert random bytes
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = rng.randbytes(rng.randint(1, 8))
    elif choice == 3:  # pure noise
        buf = bytearray(rng.randbytes(rng.randint(1, 64)))
    elif choice == 4 and buf:  # change the packet type / flags byte
        buf[0] = rng.randrange(256)
    # choice 5: keep it valid
    return bytes(buf)


@dataclass
class Tally:
    packets: int = 0
    connections: int = 0
    closed: int = 0
    disconnect_reasons: dict[int, int] = field(default_factory=dict)
    wrong_reasons: list[int] = field(default_factory=list)


async def fuzz_connection(
    port: int, token: str, version: int, rng: random.Random, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    tally.connections += 1
    try:
        client_id = f"fuzz-{uuid.uuid4().hex[:8]}"
        connect = Connect(version, client_id, username="Token", password=token.encode())
        writer.write(encode(connect, version))
        decoder = StreamDecoder(protocol_level=version)
        connack = decoder.feed(await asyncio.wait_for(reader.read(256), 5))
        assert connack
        assert isinstance(connack[0], c.Connack)
        assert connack[0].reason_code == 0
        seeds = seed_packets(version)
        for _ in range(60):
            writer.write(mutate(rng.choice(seeds), rng))
            tally.packets += 1
            await writer.drain()
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.001)
            except TimeoutError:
                continue
            if not data:
                tally.closed += 1
                return
            try:
                for packet in decoder.feed(data):
                    if isinstance(packet, Disconnect):
                        tally.disconnect_reasons[packet.reason_code] = (
                            tally.disconnect_reasons.get(packet.reason_code, 0) + 1
                        )
                        if packet.reason_code not in DISCONNECT_REASONS:
                            tally.wrong_reasons.append(packet.reason_code)
            except ProtocolError:
                pass
    except (ConnectionError, OSError):
        tally.closed += 1
    finally:
        writer.close()


@pytest.mark.slow
def test_fuzzed_packets_are_refused_and_the_gateway_keeps_serving(sqlite_stack: Stack) -> None:
    account = sqlite_stack.create_account("fuzz", plan=sqlite_stack.unlimited_plan())
    device = sqlite_stack.create_device(account["token"], name="fuzzer")
    good = Client(sqlite_stack.mqtt_port, device["token"], version=4)
    assert good.connect() == 0
    good.subscribe("health/#", qos=1)
    rng = random.Random(20261124)
    tally = Tally()

    async def run() -> None:
        while tally.packets < TARGET_PACKETS:
            await asyncio.gather(
                *(
                    fuzz_connection(
                        sqlite_stack.mqtt_port, device["token"], rng.choice((4, 5)), rng, tally
                    )
                    for _ in range(20)
                )
            )
            assert good.publish("health/ping", "alive", qos=1, wait=5) == 0

    asyncio.run(run())
    assert tally.packets >= TARGET_PACKETS
    assert tally.closed > tally.connections // 2, tally  # invalid input ends connections
    assert not tally.wrong_reasons, tally
    assert good.publish("health/final", "still here", qos=1) == 0
    messages = []
    while True:
        try:
            messages.append(good.expect(timeout=2).topic)
        except AssertionError:
            break
    assert "health/final" in messages
    print(f"fuzz: {tally}")
