"""Gateway metrics. Counters are read from the node's own counters at scrape time, so the
per-message path pays nothing for them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from sluice_gateway.node import GatewayNode


class GatewayCollector(Collector):
    def __init__(self, node: GatewayNode) -> None:
        self.node = node

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        node = self.node
        stats = node.stats
        connections = GaugeMetricFamily(
            "sluice_gateway_connections", "Open MQTT connections by listener", labels=["listener"]
        )
        by_listener: dict[str, int] = {}
        for conn in node.connections:
            by_listener[conn.listener] = by_listener.get(conn.listener, 0) + 1
        for listener, count in sorted(by_listener.items()):
            connections.add_metric([listener], count)
        yield connections
        yield GaugeMetricFamily(
            "sluice_gateway_sessions",
            "Sessions held (connected or persistent)",
            value=sum(1 for _ in node.broker.sessions()),
        )
        yield GaugeMetricFamily(
            "sluice_gateway_retained", "Retained messages held", value=node.broker.retained_count()
        )
        yield GaugeMetricFamily(
            "sluice_gateway_kafka_pending",
            "Publishes waiting for Kafka's acknowledgement",
            value=node.uplink.pending,
        )
        yield CounterMetricFamily(
            "sluice_gateway_messages_in",
            "PUBLISH packets accepted from clients",
            value=stats["published"],
        )
        yield CounterMetricFamily(
            "sluice_gateway_messages_out",
            "Message copies delivered to sessions",
            value=node.broker.delivered,
        )
        yield CounterMetricFamily(
            "sluice_gateway_connects", "Accepted CONNECTs", value=stats["connects"]
        )
        yield CounterMetricFamily(
            "sluice_gateway_auth_failures",
            "Refused logins (bad, expired or throttled tokens)",
            value=stats["auth_failures"],
        )
        yield CounterMetricFamily(
            "sluice_gateway_publishes_refused",
            "Publishes refused (permission, ACL, limits)",
            value=stats["refused"],
        )
        yield CounterMetricFamily(
            "sluice_gateway_qos1_resends_absorbed",
            "QoS 1 resends of publishes the gateway already held (answered, not stored again)",
            value=stats["resends_absorbed"],
        )
        yield CounterMetricFamily(
            "sluice_gateway_kafka_batch_failures",
            "Kafka batches that failed and were retried",
            value=node.uplink.failed_batches,
        )
        yield CounterMetricFamily(
            "sluice_gateway_qos0_dropped",
            "QoS 0 copies dropped for slow or offline subscribers",
            value=sum(s.dropped for s in node.broker.sessions()),
        )
        yield CounterMetricFamily(
            "sluice_gateway_inspector_dropped",
            "Live Inspector events dropped",
            value=node.events.dropped,
        )


def register(node: GatewayNode) -> GatewayCollector:
    collector = GatewayCollector(node)
    REGISTRY.register(collector)
    return collector
