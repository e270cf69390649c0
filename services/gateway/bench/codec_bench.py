"""Microbenchmark of the MQTT codec's hot paths on one core.

Measures QoS 1 PUBLISH packets with a 64-byte payload, decoded from a stream fed in 64 kB chunks
(packets cut at arbitrary points, as a socket delivers them) and encoded one by one, for MQTT
3.1.1 and 5.0. Run: .venv/bin/python services/gateway/bench/codec_bench.py
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from sluice_gateway.codec import (
    PUBACK,
    Properties,
    Publish,
    StreamDecoder,
    encode,
    encode_ack,
    encode_publish,
)

CHUNK = 64 * 1024
PAYLOAD = bytes(range(64))


def topic(index: int) -> str:
    return f"devices/sensor-{index % 500:04d}/telemetry"


def best_rate(count: int, rounds: int, run: Callable[[], None]) -> float:
    """Packets per second of the fastest round (the least disturbed by the machine)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def bench_level(level: int, count: int, rounds: int) -> None:
    stream = b"".join(
        encode_publish(topic(i), PAYLOAD, 1, False, False, i % 65535 + 1, level)
        for i in range(count)
    )
    chunks = [stream[start : start + CHUNK] for start in range(0, len(stream), CHUNK)]

    def decode_stream() -> None:
        decoder = StreamDecoder(protocol_level=level)
        decoded = 0
        for chunk in chunks:
            decoded += len(decoder.feed(chunk))
        assert decoded == count
        assert decoder.buffered == 0

    topics = [topic(i) for i in range(count)]
    raw_topics = [name.encode() for name in topics]

    def encode_with_helper() -> None:
        for i in range(count):
            encode_publish(topics[i], PAYLOAD, 1, False, False, i % 65535 + 1, level)

    def encode_raw_topic() -> None:
        for i in range(count):
            encode_publish(raw_topics[i], PAYLOAD, 1, False, False, i % 65535 + 1, level)

    packets = [Publish(topics[i], PAYLOAD, 1, False, False, i % 65535 + 1) for i in range(count)]

    def encode_dataclass() -> None:
        for packet in packets:
            encode(packet, level)

    with_properties = Properties(message_expiry_interval=60, user_properties=[("fw", "1.2.3")])
    stream_with_properties = b"".join(
        encode_publish(topic(i), PAYLOAD, 1, False, False, i % 65535 + 1, level, with_properties)
        for i in range(count)
    )
    property_chunks = [
        stream_with_properties[start : start + CHUNK]
        for start in range(0, len(stream_with_properties), CHUNK)
    ]

    def decode_stream_with_properties() -> None:
        decoder = StreamDecoder(protocol_level=level)
        for chunk in property_chunks:
            decoder.feed(chunk)

    acks = b"".join(encode_ack(PUBACK, i % 65535 + 1, level) for i in range(count))
    ack_chunks = [acks[start : start + CHUNK] for start in range(0, len(acks), CHUNK)]

    def decode_acks() -> None:
        decoder = StreamDecoder(protocol_level=level)
        for chunk in ack_chunks:
            decoder.feed(chunk)

    def encode_acks() -> None:
        for i in range(count):
            encode_ack(PUBACK, i % 65535 + 1, level)

    publish_size = len(stream) // count
    cases = [
        ("decode_publish", publish_size, decode_stream),
        ("encode_publish_str_topic", publish_size, encode_with_helper),
        ("encode_publish_bytes_topic", publish_size, encode_raw_topic),
        ("encode_publish_dataclass", publish_size, encode_dataclass),
        ("decode_puback", len(acks) // count, decode_acks),
        ("encode_puback", len(acks) // count, encode_acks),
    ]
    if level == 5:
        size = len(stream_with_properties) // count
        cases.append(("decode_publish_2_properties", size, decode_stream_with_properties))
    version = {4: "3.1.1", 5: "5.0"}[level]
    for name, size, run in cases:
        rate = best_rate(count, rounds, run)
        print(f"mqtt={version} case={name} packet_bytes={size} rate={rate / 1000:.0f}k/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000, help="packets per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best one counts")
    args = parser.parse_args()
    for level in (4, 5):
        bench_level(level, args.count, args.rounds)


if __name__ == "__main__":
    main()
