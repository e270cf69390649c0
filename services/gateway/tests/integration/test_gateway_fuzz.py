"""Hostile bytes against a running gateway: ≥ 100k random and mutated packets.

Each fuzz connection logs in properly, then sends mutated packets (the corpus and the
connection are sluice_gateway.testing's, shared with the reliability suite). The gateway
must close a connection whose input is invalid (MQTT 5: after a DISCONNECT with a reason
code), answer what is still valid, and keep serving a well-behaved client throughout.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack
from sluice_gateway.testing import FuzzTally, fuzz_connection

TARGET_PACKETS = 100_000


@pytest.mark.slow
def test_fuzzed_packets_are_refused_and_the_gateway_keeps_serving(sqlite_stack: Stack) -> None:
    account = sqlite_stack.create_account("fuzz", plan=sqlite_stack.unlimited_plan())
    device = sqlite_stack.create_device(account["token"], name="fuzzer")
    good = Client(sqlite_stack.mqtt_port, device["token"], version=4)
    assert good.connect() == 0
    good.subscribe("health/#", qos=1)
    rng = random.Random(20261124)
    tally = FuzzTally()

    async def run() -> None:
        while tally.packets < TARGET_PACKETS:
            await asyncio.gather(
                *(
                    fuzz_connection(sqlite_stack.mqtt_port, device["token"], rng, tally)
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
