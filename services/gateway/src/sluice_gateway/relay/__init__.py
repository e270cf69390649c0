"""MQTT relay: the gateway subscribes to third-party brokers for accounts (docs/relay.md)."""

from __future__ import annotations

import logging

from sluice import records
from sluice.settings import SluiceSettings
from sluice_gateway.node import GatewayNode
from sluice_gateway.relay import metrics
from sluice_gateway.relay.manager import RelayManager, RelayOptions

__all__ = ["RelayManager", "RelayOptions", "create_relays"]


def create_relays(
    node: GatewayNode, settings: SluiceSettings, topics: records.TopicNames
) -> RelayManager:
    """The gateway's relay manager, with its metrics registered; run it with ``run(stop)``."""
    # gmqtt logs every connection and packet at INFO: keep its warnings only.
    for name in ("gmqtt", "sluice.gateway.relay.gmqtt"):
        logging.getLogger(name).setLevel(logging.WARNING)
    manager = RelayManager(node, settings, topics)
    metrics.register(manager)
    return manager
