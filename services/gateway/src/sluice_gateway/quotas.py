"""Plan limits and abuse guards at the MQTT edge.

Per account and minute (fixed windows, shared through Redis when several gateways run):
connects, publishes, subscribe-receives; per account: concurrent connections; per source
address: failed logins and open connections. Every hit is counted in Prometheus and shown
in the Live Inspector (at most one event per account and limit each second).
"""

from __future__ import annotations

import time
from typing import Any

from sluice import metrics
from sluice.limits import Gauges, WindowCounter
from sluice.plans import plan_limits
from sluice_gateway import codec as c
from sluice_gateway.events import EventSink
from sluice_gateway.session import Session
from sluice_gateway.settings import GatewaySettings

Refusal = tuple[str, int]  # (reason, MQTT 5 reason code)


class Quotas:
    def __init__(
        self, settings: GatewaySettings, events: EventSink, redis: Any | None, node_id: str
    ) -> None:
        self.settings = settings
        self.events = events
        self.counter = WindowCounter(redis, prefix="sluice:mqtt:")
        self.gauges = Gauges(redis, node_id, prefix="sluice:mqttgauge:")
        self.per_ip: dict[str, int] = {}
        self._hits = {
            name: metrics.limit_hits.labels("gateway", name)
            for name in (
                "mqtt_connect_per_min",
                "max_connections",
                "max_connections_per_ip",
                "auth_failures",
                "mqtt_publish_per_min",
                "mqtt_subscribe_receive_per_min",
                "max_topic_length",
                "max_topic_levels",
            )
        }
        self._last_event: dict[tuple[str, str], float] = {}

    def _hit(
        self, session: Session | None, account: str, device: str, name: str, **fields: Any
    ) -> None:
        self._hits[name].inc()
        now = time.monotonic()
        key = (account, name)
        if now - self._last_event.get(key, 0.0) >= 1.0:
            self._last_event[key] = now
            self.events.emit_raw(account, device, "limit", limit=name, **fields)

    @staticmethod
    def limits_for(info: Any) -> dict[str, Any]:
        return plan_limits(info.limits if info else None, info.plan if info else "free")

    # -- connections ------------------------------------------------------------------
    def throttled(self, ip: str) -> bool:
        if self.counter.count(f"authfail:{ip}") >= self.settings.auth_failures_per_minute:
            self._hit(None, "", "", "auth_failures", address=ip)
            return True
        return False

    def auth_failed(self, ip: str) -> None:
        self.counter.hit(f"authfail:{ip}", 1 << 30)

    def ip_full(self, ip: str) -> bool:
        if self.per_ip.get(ip, 0) >= self.settings.max_connections_per_ip:
            self._hit(None, "", "", "max_connections_per_ip", address=ip)
            return True
        return False

    def opened(self, ip: str) -> None:
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        left = self.per_ip.get(ip, 0) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)

    def admit(self, account: str, device: str, limits: dict[str, Any]) -> Refusal | None:
        """May this account open one more connection now?"""
        if self.gauges.total(f"conn:{account}") >= int(limits["max_connections"]):
            self._hit(None, account, device, "max_connections")
            return "the account has reached its plan's concurrent connections", c.QUOTA_EXCEEDED
        if self.counter.hit(f"{account}:connect", int(limits["mqtt_connect_per_min"])) is not None:
            self._hit(None, account, device, "mqtt_connect_per_min")
            return "the account's connects per minute are used up", c.CONNECTION_RATE_EXCEEDED
        self.gauges.add(f"conn:{account}", 1)
        for kind in ("publish", "receive", "connect"):
            self.counter.watch(f"{account}:{kind}")
        return None

    def session_closed(self, account: str) -> None:
        self.gauges.add(f"conn:{account}", -1)
        for kind in ("publish", "receive", "connect"):
            self.counter.unwatch(f"{account}:{kind}")

    # -- messages ---------------------------------------------------------------------
    def publish(self, session: Session, topic: str) -> Refusal | None:
        limits = session.limits
        if len(topic) > int(limits["max_topic_length"]):  # characters; bytes ≥ characters
            self._hit(
                session, session.account, session.device_id, "max_topic_length", topic=topic[:200]
            )
            return f"topic longer than {limits['max_topic_length']}", c.TOPIC_NAME_INVALID
        if topic.count("/") >= int(limits["max_topic_levels"]):
            self._hit(
                session, session.account, session.device_id, "max_topic_levels", topic=topic[:200]
            )
            return f"topic deeper than {limits['max_topic_levels']} levels", c.TOPIC_NAME_INVALID
        if (
            self.counter.hit(f"{session.account}:publish", int(limits["mqtt_publish_per_min"]))
            is not None
        ):
            self._hit(session, session.account, session.device_id, "mqtt_publish_per_min")
            # 0x96 exists only for DISCONNECT; PUBACK/PUBREC say "quota exceeded".
            return "the account's publishes per minute are used up", c.QUOTA_EXCEEDED
        return None

    def filter_allowed(self, session: Session, topic_filter: str) -> bool:
        limits = session.limits
        return len(topic_filter) <= int(limits["max_topic_length"]) and topic_filter.count(
            "/"
        ) < int(limits["max_topic_levels"])

    def deliver(self, account: str, copies: int, limit: int) -> bool:
        """Count ``copies`` deliveries to the account's subscribers; False drops them all."""
        if self.counter.hit(f"{account}:receive", limit, copies) is None:
            return True
        self._hit(None, account, "", "mqtt_subscribe_receive_per_min", copies=copies)
        return False
