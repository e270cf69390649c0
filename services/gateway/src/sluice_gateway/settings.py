"""Gateway settings (every field is a ``SLUICE_`` environment variable)."""

from __future__ import annotations

from pydantic import Field

from sluice.settings import SluiceSettings


class GatewaySettings(SluiceSettings):
    mqtt_host: str = "0.0.0.0"
    mqtt_port: int = 1883
    mqtts_port: int = 8883
    ws_port: int = 8083
    ws_path: str = "/mqtt"
    tls_cert: str | None = Field(
        default=None, description="PEM certificate (chain) for MQTT over TLS"
    )
    tls_key: str | None = Field(default=None, description="PEM private key for MQTT over TLS")
    connect_timeout: float = Field(
        default=10.0, description="Seconds a new socket has to send CONNECT"
    )
    server_keepalive: int = Field(
        default=0, description="Upper bound on client keepalive in seconds (0: accept the client's)"
    )
    receive_maximum: int = Field(
        default=100, description="Unacknowledged QoS 1/2 publishes per client"
    )
    topic_alias_maximum: int = 64
    max_node_inflight: int = Field(
        default=50_000,
        description="Publishes waiting for Kafka before the node stops reading sockets",
    )
    max_session_queue: int = Field(
        default=1000, description="Queued QoS 1/2 messages per offline session"
    )
    max_session_expiry: int = Field(
        default=86_400, description="Longest a disconnected persistent session is kept (seconds)"
    )
    write_buffer_limit: int = Field(
        default=1 << 20,
        description="Bytes queued to a slow subscriber before QoS 0 is dropped for it",
    )
    auth_failures_per_minute: int = Field(
        default=10, description="Failed logins per source IP per minute before refusing it"
    )
    max_connections_per_ip: int = Field(
        default=1000, description="Open connections per source address on one gateway"
    )
