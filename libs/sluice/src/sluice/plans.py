"""Plan limits. Defaults follow TagoIO's published hard limits (per account, per minute)."""

from __future__ import annotations

from typing import Any

LIMIT_KEYS: tuple[str, ...] = (
    "mqtt_connect_per_min",
    "mqtt_publish_per_min",
    "mqtt_subscribe_receive_per_min",
    "data_post_per_min",
    "data_get_per_min",
    "data_edit_per_min",
    "device_token_per_min",
    "max_connections",
    "max_subscriptions_per_connection",
    "max_packet_size",
    "max_topic_length",
    "max_topic_levels",
    "max_inflight",
)

_COMMON = {
    "max_packet_size": 256 * 1024,
    "max_topic_length": 1024,
    "max_topic_levels": 32,
    "max_inflight": 100,
}

DEFAULT_PLANS: dict[str, dict[str, Any]] = {
    "free": {
        "mqtt_connect_per_min": 20,
        "mqtt_publish_per_min": 250,
        "mqtt_subscribe_receive_per_min": 250,
        "data_post_per_min": 250,
        "data_get_per_min": 250,
        "data_edit_per_min": 60,
        "device_token_per_min": 50,
        "max_connections": 100,
        "max_subscriptions_per_connection": 100,
        **_COMMON,
    },
    "starter": {
        "mqtt_connect_per_min": 100,
        "mqtt_publish_per_min": 5_000,
        "mqtt_subscribe_receive_per_min": 5_000,
        "data_post_per_min": 5_000,
        "data_get_per_min": 5_000,
        "data_edit_per_min": 250,
        "device_token_per_min": 250,
        "max_connections": 1_000,
        "max_subscriptions_per_connection": 500,
        **_COMMON,
    },
    "scale": {
        "mqtt_connect_per_min": 200,
        "mqtt_publish_per_min": 15_000,
        "mqtt_subscribe_receive_per_min": 15_000,
        "data_post_per_min": 15_000,
        "data_get_per_min": 15_000,
        "data_edit_per_min": 1_000,
        "device_token_per_min": 2_000,
        "max_connections": 10_000,
        "max_subscriptions_per_connection": 1_000,
        **_COMMON,
    },
}


def plan_limits(stored: dict[str, Any] | None, plan: str) -> dict[str, Any]:
    """A plan's limits: what is stored, over the defaults of the named (or free) plan."""
    base = dict(DEFAULT_PLANS.get(plan, DEFAULT_PLANS["free"]))
    base.update(stored or {})
    return base
