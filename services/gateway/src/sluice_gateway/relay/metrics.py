"""Relay metrics, read from the relays' own counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from sluice_gateway.relay.manager import RelayManager


class RelayCollector(Collector):
    def __init__(self, manager: RelayManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["relay", "account"]
        connected = GaugeMetricFamily(
            "sluice_relay_connected", "1 while the relay is connected to its broker", labels=labels
        )
        received = CounterMetricFamily(
            "sluice_relay_messages_in", "Relayed messages handed to Kafka", labels=labels
        )
        sent = CounterMetricFamily(
            "sluice_relay_messages_out", "Platform publishes sent to the broker", labels=labels
        )
        dropped = CounterMetricFamily(
            "sluice_relay_dropped",
            "Messages refused (no device, too large, …) or downlinks dropped",
            labels=labels,
        )
        relays = list(self.manager.relays.values())
        for client in relays:
            key = [client.definition.id, client.definition.account_id]
            stats = client.stats
            connected.add_metric(key, 1 if stats.connected else 0)
            received.add_metric(key, stats.messages_in)
            sent.add_metric(key, stats.messages_out)
            dropped.add_metric(key, stats.dropped)
        yield GaugeMetricFamily(
            "sluice_relays_owned", "Relays this gateway runs", value=len(relays)
        )
        yield connected
        yield received
        yield sent
        yield dropped


def register(manager: RelayManager) -> RelayCollector:
    collector = RelayCollector(manager)
    REGISTRY.register(collector)
    return collector
