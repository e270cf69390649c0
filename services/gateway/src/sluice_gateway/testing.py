"""Hostile MQTT input for tests of a running gateway: raw connections that send any bytes
and read what the gateway answers until it closes the connection (or stays quiet), a fuzz
corpus (valid packets of every kind and ways to mutate them), and one fuzzing connection.

Used by the gateway's fuzz test and by the reliability suite (tests/chaos).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Answer:
    """What came back: the packets, and whether the gateway closed the connection."""

    packets: list[Any] = field(default_factory=list)
    closed: bool = False
    undecodable: bool = False

    @property
    def disconnect(self) -> int | None:
        for packet in self.packets:
            if isinstance(packet, Disconnect):
                return packet.reason_code
        return None

    def of(self, kind: type) -> list[Any]:
        return [p for p in self.packets if isinstance(p, kind)]

    def describe(self) -> str:
        if self.disconnect is not None:
            return f"DISCONNECT {self.disconnect:#04x}"
        names = [type(p).__name__ for p in self.packets]
        return ("closed" if self.closed else "open") + (f" after {names}" if names else "")


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, version: int):
        self.reader, self.writer, self.version = reader, writer, version
        self.decoder = StreamDecoder(protocol_level=version)
        self.connack: c.Connack | None = None

    @classmethod
    async def open(cls, port: int, version: int = 4) -> RawConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        return cls(reader, writer, version)

    @classmethod
    async def logged_in(
        cls, port: int, token: str, version: int = 4, client_id: str = "", **props: Any
    ) -> RawConnection:
        conn = await cls.open(port, version)
        properties = Properties(**props) if props and version == 5 else None
        connect = Connect(version, client_id, username="Token", password=token.encode())
        connect.properties = properties
        conn.send(encode(connect, version))
        answer = await conn.read_until(c.Connack, timeout=10)
        connacks = answer.of(c.Connack)
        assert connacks, answer.describe()
        assert connacks[0].reason_code == 0, answer.describe()
        conn.connack = connacks[0]
        return conn

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_until(self, kind: type | None = None, timeout: float = 5.0) -> Answer:
        """Read until a packet of ``kind`` arrives, the connection closes, or ``timeout``."""
        answer = Answer()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return answer
            try:
                data = await asyncio.wait_for(self.reader.read(1 << 20), remaining)
            except TimeoutError:
                return answer
            except (ConnectionError, OSError):
                answer.closed = True
                return answer
            if not data:
                answer.closed = True
                return answer
            try:
                answer.packets += self.decoder.feed(data)
            except ProtocolError as error:
                answer.packets += error.packets
                answer.undecodable = True
            if kind is not None and any(isinstance(p, kind) for p in answer.packets):
                return answer

    async def until_closed(self, timeout: float = 5.0) -> Answer:
        return await self.read_until(None, timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


# -- a fuzz corpus ------------------------------------------------------------------------


def seed_packets(version: int) -> list[bytes]:
    """Valid packets of every kind a client sends, with and without MQTT 5 properties."""
    v5 = version == 5
    props = Properties(user_properties=[("k", "v")]) if v5 else None
    publish_props = Properties(user_properties=[("k", "v")], content_type="text/plain")
    alias = Properties(topic_alias=3) if v5 else None
    packets: list[Any] = [
        Publish("fuzz/a", b"payload", 0),
        Publish("fuzz/b", b"x" * 40, 1, packet_id=7, properties=publish_props if v5 else None),
        Publish("fuzz/c", b"", 2, retain=True, packet_id=9),
        Publish("fuzz/d/" + "l/" * 10, bytes(range(256)), 1, packet_id=10),
        Subscribe(3, [Subscription("fuzz/#", 1), Subscription("$share/g/fuzz/+", 0)], props),
        Unsubscribe(4, ["fuzz/#"]),
        Puback(11),
        c.Pubrel(9),
        c.Pubrec(12),
        c.Pubcomp(13),
        Pingreq(),
    ]
    if v5:
        packets.append(Publish("fuzz/alias", b"a", 1, packet_id=14, properties=alias))
    return [encode(p, version) for p in packets]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Flip bits, truncate, insert, replace with noise, change the type byte, lie about the
    remaining length, splice two packets — or keep the packet valid."""
    choice = rng.randrange(8)
    buf = bytearray(data)
    if choice == 0 and buf:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif choice == 1 and len(buf) > 1:
        del buf[rng.randrange(1, len(buf)) :]
    elif choice == 2:
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = rng.randbytes(rng.randint(1, 8))
    elif choice == 3:
        buf = bytearray(rng.randbytes(rng.randint(1, 64)))
    elif choice == 4 and buf:
        buf[0] = rng.randrange(256)
    elif choice == 5 and len(buf) > 1:
        # remaining length: a random (possibly 5-byte, continuation-only) varint
        buf[1:2] = bytes(rng.choice([[0xFF, 0xFF, 0xFF, 0x7F], [0x80] * 5, [0x00], [0x7F]]))
    elif choice == 6:
        buf += rng.choice([b"\x30", b"\x82\x05\x00", b"\xe0\x00", b"\x10\x00"])
    return bytes(buf)


# -- fuzzing connections --------------------------------------------------------------------

# Reasons a gateway may give when it closes a fuzzed connection (MQTT 5 DISCONNECT).
FUZZ_DISCONNECT_REASONS = {
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


@dataclass
class FuzzTally:
    packets: int = 0
    connections: int = 0
    closed: int = 0
    reasons: Counter[int] = field(default_factory=Counter)
    wrong_reasons: list[int] = field(default_factory=list)


async def fuzz_connection(
    port: int, token: str, rng: random.Random, tally: FuzzTally, packets: int = 60
) -> None:
    """Log in (MQTT 3.1.1 or 5 at random), then send up to ``packets`` mutated packets,
    counting how the gateway answers, until it closes the connection."""
    version = rng.choice((4, 5))
    conn = await RawConnection.logged_in(port, token, version, f"fuzz-{uuid.uuid4().hex[:8]}")
    tally.connections += 1
    seeds = seed_packets(version)
    try:
        for _ in range(packets):
            conn.send(mutate(rng.choice(seeds), rng))
            tally.packets += 1
            await conn.writer.drain()
            answer = await conn.read_until(None, timeout=0.002)
            reason = answer.disconnect
            if reason is not None:
                tally.reasons[reason] += 1
                if reason not in FUZZ_DISCONNECT_REASONS:
                    tally.wrong_reasons.append(reason)
            if answer.closed:
                tally.closed += 1
                return
    except (ConnectionError, OSError):
        tally.closed += 1
    finally:
        conn.close()
