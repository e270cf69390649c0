"""Hostile MQTT input against a live gateway: each bad packet is refused or its connection
closed with the right reason code, the gateway keeps serving, and its memory stays bounded.

- a fuzz corpus: random and mutated packets after a proper login, and mutated CONNECTs (a
  CONNECT is accepted exactly when its credentials are a valid token);
- a table of specific abuses: oversized and truncated packets, invalid UTF-8, wildcard
  publishes, reserved topics, topic-alias abuse, broken flags and identifiers;
- 65,536 subscriptions on one connection: refused past the plan's
  ``max_subscriptions_per_connection`` (SUBACK 0x97 / 0x80), and on the unlimited plan held
  and released without the gateway's RSS (from /proc/<pid>/status) growing round after round.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from chaoslib import probes
from chaoslib.report import report, sizes

from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack
from sluice_gateway import codec as c
from sluice_gateway.codec import (
    Connect,
    Properties,
    ProtocolError,
    StreamDecoder,
    Subscribe,
    Subscription,
    encode,
    encode_publish,
)
from sluice_gateway.testing import (
    Answer,
    FuzzTally,
    RawConnection,
    fuzz_connection,
    mutate,
)

SUBSCRIPTIONS = 65_536
SUBSCRIBE_BATCH = 4096  # filters per SUBSCRIBE packet (about 60 kB, under 256 kB)
RSS_HELD_LIMIT_MB = 400  # 65,536 subscriptions held: about 2 kB each at most
RSS_ROUND_GROWTH_LIMIT_MB = 40  # a second identical round must reuse the first one's memory
RSS_FUZZ_GROWTH_LIMIT_MB = 60


@dataclass(frozen=True)
class Fuzz:
    packets: int
    connects: int


REDUCED = Fuzz(packets=4_000, connects=300)
FULL = Fuzz(packets=100_000, connects=5_000)


def gateway_rss(stack: Stack) -> float:
    return probes.rss_mb(probes.pid_of(stack, "gateway"))


@pytest.fixture(scope="module")
def tenant(sqlite_stack: Stack) -> dict[str, Any]:
    account = sqlite_stack.create_account("hostile", plan=sqlite_stack.unlimited_plan())
    device = sqlite_stack.create_device(account["token"], name="hostile")
    return {"account": account, "token": device["token"], "device": device["device_id"]}


# -- fuzz -------------------------------------------------------------------------------


def credentials(data: bytes, token: str) -> str:
    """What these CONNECT bytes are: "valid" or "invalid" credentials, "malformed", or
    "incomplete" (the gateway waits for the rest until SLUICE_CONNECT_TIMEOUT)."""
    try:
        packets = StreamDecoder().feed(data)
    except ProtocolError:
        return "malformed"
    if not packets:
        return "incomplete"
    connect = packets[0]
    if not isinstance(connect, Connect):
        return "malformed"
    # As the gateway reads them: the password, else the username, stripped.
    if connect.password:
        given = connect.password.decode("utf-8", "replace")
    else:
        given = connect.username or ""
    return "valid" if given.strip() == token else "invalid"


async def fuzz_connect(port: int, token: str, rng: random.Random, tally: Counter[str]) -> None:
    version = rng.choice((3, 4, 5))
    connect = Connect(
        version,
        f"cfuzz-{uuid.uuid4().hex[:8]}",
        username="Token",
        password=token.encode(),
        protocol_name="MQIsdp" if version == 3 else "MQTT",
    )
    data = mutate(encode(connect, version), rng)
    kind = credentials(data, token)
    conn = await RawConnection.open(port, version)
    try:
        conn.send(data)
        answer = await conn.read_until(c.Connack, timeout=0.5 if kind == "incomplete" else 5)
    finally:
        conn.close()
    connacks = answer.of(c.Connack)
    if connacks and connacks[0].reason_code == 0:
        got = "accepted"
    elif connacks:
        got = f"CONNACK {connacks[0].reason_code:#04x}"
    else:
        got = "closed" if answer.closed else "no answer"
    tally[f"{kind}: {got}"] += 1


def wrong_connect_outcomes(tally: Counter[str]) -> dict[str, int]:
    """Accepted without valid credentials, or a complete CONNECT left unanswered."""
    return {
        key: n
        for key, n in tally.items()
        if (key.endswith(": accepted") and not key.startswith("valid"))
        or (key.endswith(": no answer") and not key.startswith("incomplete"))
    }


@pytest.mark.parametrize("size", sizes(REDUCED, FULL))
def test_fuzzed_packets_are_refused_and_the_gateway_keeps_serving(
    sqlite_stack: Stack, tenant: dict[str, Any], size: Fuzz
) -> None:
    port, token = sqlite_stack.mqtt_port, tenant["token"]
    good = Client(port, token, client_id=f"good-{uuid.uuid4().hex[:6]}", version=5)
    assert good.connect() == 0
    good.subscribe("health/#", qos=1)
    rss_before = gateway_rss(sqlite_stack)
    rng = random.Random(20261124)
    tally = FuzzTally()
    connects: Counter[str] = Counter()

    async def run() -> None:
        while tally.packets < size.packets:
            await asyncio.gather(*(fuzz_connection(port, token, rng, tally) for _ in range(20)))
            assert good.publish("health/ping", "alive", qos=1, wait=10) == 0
        while sum(connects.values()) < size.connects:
            await asyncio.gather(*(fuzz_connect(port, token, rng, connects) for _ in range(20)))

    started = time.monotonic()
    asyncio.run(run())
    assert good.publish("health/final", "still here", qos=1) == 0
    seen = []
    while "health/final" not in seen:
        seen.append(good.expect(timeout=10).topic)
    good.disconnect()
    rss_after = gateway_rss(sqlite_stack)
    report(
        f"mqtt fuzz[{size.packets} packets]",
        {
            "packets": tally.packets,
            "connections": tally.connections,
            "closed by the gateway": tally.closed,
            "DISCONNECT reasons": {f"{k:#04x}": v for k, v in sorted(tally.reasons.items())},
            "unexpected reasons": tally.wrong_reasons,
            "mutated CONNECTs (kind: answer)": dict(sorted(connects.items())),
            "gateway RSS MB before/after": [round(rss_before), round(rss_after)],
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert sqlite_stack.processes["gateway"].alive()
    assert tally.closed > tally.connections // 2, tally  # invalid input ends connections
    assert not tally.wrong_reasons, tally
    assert not wrong_connect_outcomes(connects), connects
    assert rss_after - rss_before < RSS_FUZZ_GROWTH_LIMIT_MB


# -- specific abuses ----------------------------------------------------------------------


def raw_publish(topic: bytes, payload: bytes, qos: int, version: int, **props: Any) -> bytes:
    properties = Properties(**props) if props else None
    return encode_publish(
        topic, payload, qos, False, False, 1 if qos else None, version, properties
    )


def raw_subscribe(filter_bytes: bytes, version: int) -> bytes:
    body = struct.pack(">H", 5) + (b"\x00" if version == 5 else b"")
    body += struct.pack(">H", len(filter_bytes)) + filter_bytes + b"\x01"
    return bytes([0x82, len(body)]) + body


def oversized_header(size: int) -> bytes:
    """A PUBLISH fixed header announcing ``size`` bytes, followed by a few of them only."""
    length = bytearray()
    while True:
        byte, size = size % 128, size // 128
        length.append(byte | (0x80 if size else 0))
        if not size:
            break
    return b"\x30" + bytes(length) + b"\x00\x01a" + b"x" * 100


@dataclass(frozen=True)
class Abuse:
    name: str
    send: Any  # bytes for (version) → bytes
    v5: str  # what an MQTT 5 client must see
    v4: str = "closed"  # what an MQTT 3.1.1 client must see


ABUSES = [
    Abuse(
        "invalid UTF-8 topic", lambda v: raw_publish(b"a/\xff\xfe", b"x", 1, v), "DISCONNECT 0x81"
    ),
    Abuse(
        "UTF-16 surrogate in topic",
        lambda v: raw_publish(b"a/\xed\xa0\x80", b"x", 1, v),
        "DISCONNECT 0x81",
    ),
    Abuse("U+0000 in topic", lambda v: raw_publish(b"a/\x00", b"x", 0, v), "DISCONNECT 0x81"),
    Abuse("invalid UTF-8 filter", lambda v: raw_subscribe(b"a/\xc3\x28", v), "DISCONNECT 0x81"),
    Abuse("wildcard publish +", lambda v: raw_publish(b"a/+/b", b"x", 1, v), "DISCONNECT 0x90"),
    Abuse("wildcard publish #", lambda v: raw_publish(b"a/#", b"x", 0, v), "DISCONNECT 0x90"),
    Abuse("publish to $SYS", lambda v: raw_publish(b"$SYS/x", b"x", 1, v), "PUBACK 0x87"),
    Abuse(
        "topic over max_topic_length",
        lambda v: raw_publish(b"t" * 1025, b"x", 1, v),
        "PUBACK 0x90",
    ),
    Abuse(
        "filter over max_topic_length",
        lambda v: encode(Subscribe(5, [Subscription("f" * 1025, 1)]), v),
        "SUBACK 0x8f",
        "SUBACK 0x80",
    ),
    Abuse("oversized packet (300 kB)", lambda v: oversized_header(300_000), "DISCONNECT 0x95"),
    Abuse(
        "maximum remaining length (256 MB)",
        lambda v: oversized_header(268_435_455),
        "DISCONNECT 0x95",
    ),
    Abuse("5-byte remaining length", lambda v: b"\x30\x80\x80\x80\x80\x01", "DISCONNECT 0x81"),
    Abuse(
        "truncated: topic past the packet end",
        lambda v: b"\x32\x04\x00\x09ab",
        "DISCONNECT 0x81",
    ),
    Abuse("truncated: no packet identifier", lambda v: b"\x32\x03\x00\x01a", "DISCONNECT 0x81"),
    Abuse("QoS 3", lambda v: b"\x36\x05\x00\x01a\x00\x01", "DISCONNECT 0x81"),
    Abuse(
        "DUP on QoS 0",
        lambda v: b"\x38\x04\x00\x01a" + (b"\x00" if v == 5 else b"x"),
        "DISCONNECT 0x82",
    ),
    Abuse(
        "packet identifier 0",
        lambda v: bytes([0x32, 5 + (v == 5)]) + b"\x00\x01a\x00\x00" + b"\x00" * (v == 5),
        "DISCONNECT 0x82",
    ),
    Abuse("second CONNECT", lambda v: encode(Connect(v, "again"), v), "DISCONNECT 0x82"),
    Abuse("reserved packet type 0", lambda v: b"\x00\x00", "DISCONNECT 0x81"),
    Abuse("PUBREL with bad flags", lambda v: b"\x60\x02\x00\x01", "DISCONNECT 0x81"),
]
ALIAS_ABUSES = [
    Abuse(
        "topic alias 0", lambda v: raw_publish(b"a", b"x", 1, v, topic_alias=0), "DISCONNECT 0x94"
    ),
    Abuse(
        "topic alias above the maximum",
        lambda v: raw_publish(b"a", b"x", 1, v, topic_alias=65),
        "DISCONNECT 0x94",
    ),
    Abuse(
        "topic alias never set",
        lambda v: raw_publish(b"", b"x", 1, v, topic_alias=7),
        "DISCONNECT 0x82",
    ),
    Abuse(
        "topic alias to a $ topic",
        lambda v: raw_publish(b"$SYS/a", b"x", 1, v, topic_alias=2),
        "PUBACK 0x87",
    ),
    Abuse(
        "topic alias on a wildcard topic",
        lambda v: raw_publish(b"a/#", b"x", 1, v, topic_alias=2),
        "DISCONNECT 0x90",
    ),
    Abuse(
        "UTF-8 payload format, invalid payload",
        lambda v: raw_publish(b"a", b"\xff\xfe", 1, v, payload_format_indicator=1),
        "PUBACK 0x99",
    ),
]


def outcome(answer: Answer) -> str:
    for packet in answer.packets:
        if isinstance(packet, c.Puback) and packet.reason_code:
            return f"PUBACK {packet.reason_code:#04x}"
        if isinstance(packet, c.Suback):
            return "SUBACK " + ",".join(f"{code:#04x}" for code in packet.reason_codes)
    if answer.disconnect is not None:
        return f"DISCONNECT {answer.disconnect:#04x}"
    return "closed" if answer.closed else f"open: {[type(p).__name__ for p in answer.packets]}"


async def try_abuse(port: int, token: str, abuse: Abuse, version: int) -> str:
    conn = await RawConnection.logged_in(port, token, version, f"abuse-{uuid.uuid4().hex[:8]}")
    try:
        conn.send(abuse.send(version))
        answer = await conn.read_until(None, timeout=3)
        got = outcome(answer)
        if got.startswith("DISCONNECT") and not answer.closed:
            got += " (left open)"
        return got
    finally:
        conn.close()


async def flood_aliases(port: int, token: str) -> str:
    """Reassign every alias the gateway grants, many times, with long topics."""
    conn = await RawConnection.logged_in(port, token, 5, f"alias-{uuid.uuid4().hex[:8]}")
    try:
        maximum = conn.connack.properties.topic_alias_maximum if conn.connack else 0
        for round_ in range(20):
            burst = b"".join(
                raw_publish(
                    f"alias/{round_}/{alias}/".encode() + b"t" * 900, b"x", 0, 5, topic_alias=alias
                )
                for alias in range(1, (maximum or 0) + 1)
            )
            conn.send(burst)
            await conn.writer.drain()
        conn.send(encode(c.Pingreq(), 5))
        answer = await conn.read_until(c.Pingresp, timeout=5)
        return "alive" if answer.of(c.Pingresp) else outcome(answer)
    finally:
        conn.close()


async def truncated_connect(port: int) -> str:
    """Half a CONNECT, then silence: closed after SLUICE_CONNECT_TIMEOUT (10 s)."""
    conn = await RawConnection.open(port, 4)
    try:
        conn.send(encode(Connect(4, "half"), 4)[:6])
        answer = await conn.until_closed(timeout=20)
        return "closed" if answer.closed else "still open after 20 s"
    finally:
        conn.close()


async def not_mqtt(port: int) -> str:
    conn = await RawConnection.open(port, 4)
    try:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await conn.until_closed(timeout=3)
        return outcome(answer) if not answer.packets else "answered " + outcome(answer)
    finally:
        conn.close()


def test_specific_abuses_get_the_right_reason_codes(
    sqlite_stack: Stack, tenant: dict[str, Any]
) -> None:
    port, token = sqlite_stack.mqtt_port, tenant["token"]
    rss_before = gateway_rss(sqlite_stack)

    async def run() -> list[tuple[str, str, str]]:
        # The slow one first: half a CONNECT is closed only after SLUICE_CONNECT_TIMEOUT.
        half = asyncio.ensure_future(truncated_connect(port))
        jobs = []
        for abuse in ABUSES:
            jobs += [(abuse, 5), (abuse, 4)]
        jobs += [(abuse, 5) for abuse in ALIAS_ABUSES]
        results = await asyncio.gather(*(try_abuse(port, token, a, v) for a, v in jobs))
        rows = [
            (f"{a.name} (MQTT {'5.0' if v == 5 else '3.1.1'})", a.v5 if v == 5 else a.v4, got)
            for (a, v), got in zip(jobs, results, strict=True)
        ]
        rows += [
            (
                "topic-alias flood: 20 × every alias, 900-byte topics",
                "alive",
                await flood_aliases(port, token),
            ),
            ("HTTP request instead of CONNECT", "closed", await not_mqtt(port)),
            ("half a CONNECT, then silence", "closed", await half),
        ]
        return rows

    rows = asyncio.run(run())
    rss_after = gateway_rss(sqlite_stack)
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{n.ljust(width)}  expected {e:<16} got {g}" for n, e, g in rows)
    wrong = [r for r in rows if r[1] != r[2]]
    report(
        "hostile mqtt abuses",
        {
            "cases": len(rows),
            "as expected": len(rows) - len(wrong),
            "gateway RSS MB before/after": [round(rss_before), round(rss_after)],
        },
        table,
    )
    assert sqlite_stack.processes["gateway"].alive()
    assert not wrong, "\n" + table


# -- 65k subscriptions --------------------------------------------------------------------


async def subscribe_many(conn: RawConnection, count: int, prefix: str) -> Counter[int]:
    """``count`` distinct filters in SUBSCRIBE packets of SUBSCRIBE_BATCH; SUBACK codes tallied."""
    codes: Counter[int] = Counter()
    for first in range(0, count, SUBSCRIBE_BATCH):
        subs = [
            Subscription(f"{prefix}/{n}/+", 1)
            for n in range(first, min(count, first + SUBSCRIBE_BATCH))
        ]
        packet_id = first // SUBSCRIBE_BATCH + 1
        conn.send(encode(Subscribe(packet_id, subs), conn.version))
        await conn.writer.drain()
        answer = await conn.read_until(c.Suback, timeout=60)
        [suback] = answer.of(c.Suback)
        assert suback.packet_id == packet_id
        codes.update(suback.reason_codes)
    return codes


def test_subscriptions_per_connection_are_capped_and_memory_stays_bounded(
    sqlite_stack: Stack,
) -> None:
    port = sqlite_stack.mqtt_port
    plan = sqlite_stack.create_plan("chaos-subs-1000", max_subscriptions_per_connection=1000)
    capped = sqlite_stack.create_account("subs-capped", plan=plan)
    capped_token = sqlite_stack.create_device(capped["token"], name="c")["token"]
    free = sqlite_stack.create_account("subs-unlimited", plan=sqlite_stack.unlimited_plan())
    free_token = sqlite_stack.create_device(free["token"], name="u")["token"]
    figures: dict[str, Any] = {}

    async def capped_round(version: int) -> Counter[int]:
        conn = await RawConnection.logged_in(port, capped_token, version, f"cap-{version}")
        try:
            return await subscribe_many(conn, SUBSCRIPTIONS, "cap")
        finally:
            conn.close()

    async def unlimited_round(n: int) -> dict[str, float]:
        before = gateway_rss(sqlite_stack)
        conn = await RawConnection.logged_in(port, free_token, 5, f"many-{n}")
        try:
            codes = await subscribe_many(conn, SUBSCRIPTIONS, f"many{n}")
            held = gateway_rss(sqlite_stack)
            conn.send(encode(c.Pingreq(), 5))
            alive = bool((await conn.read_until(c.Pingresp, timeout=30)).of(c.Pingresp))
        finally:
            conn.close()
        await asyncio.sleep(1.0)  # the gateway drops the session (clean start)
        return {
            "granted": codes[1],
            "alive": alive,
            "rss_before": round(before, 1),
            "rss_held": round(held, 1),
            "rss_after": round(gateway_rss(sqlite_stack), 1),
        }

    async def run() -> None:
        for version in (5, 4):
            figures[f"plan limit 1000, MQTT {version}"] = await capped_round(version)
        figures["unlimited round 1"] = await unlimited_round(1)
        figures["unlimited round 2"] = await unlimited_round(2)

    asyncio.run(run())
    v5, v4 = figures["plan limit 1000, MQTT 5"], figures["plan limit 1000, MQTT 4"]
    round1, round2 = figures["unlimited round 1"], figures["unlimited round 2"]
    report(
        "65k subscriptions on one connection",
        {
            "capped MQTT 5 SUBACK codes": {f"{k:#04x}": v for k, v in v5.items()},
            "capped MQTT 3.1.1 SUBACK codes": {f"{k:#04x}": v for k, v in v4.items()},
            "unlimited round 1": round1,
            "unlimited round 2": round2,
        },
    )
    assert v5 == Counter({c.GRANTED_QOS_1: 1000, c.QUOTA_EXCEEDED: SUBSCRIPTIONS - 1000})
    assert v4 == Counter({c.GRANTED_QOS_1: 1000, c.SUBACK_FAILURE: SUBSCRIPTIONS - 1000})
    assert round1["granted"] == round2["granted"] == SUBSCRIPTIONS
    assert round1["alive"]
    assert round2["alive"]
    assert round1["rss_held"] - round1["rss_before"] < RSS_HELD_LIMIT_MB
    # Bounded: a second identical round reuses what the first one freed.
    assert round2["rss_held"] - round1["rss_held"] < RSS_ROUND_GROWTH_LIMIT_MB
    assert round2["rss_after"] - round1["rss_after"] < RSS_ROUND_GROWTH_LIMIT_MB
    assert sqlite_stack.processes["gateway"].alive()
