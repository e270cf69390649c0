"""The API's own metrics, and the ASGI middleware that measures every request.

Requests are labelled by route template (``/device/{device_id}``), never by raw path, so
the number of series stays bounded. Latency is time to the first response byte, which
also means something for the Live Inspector's never-ending streams.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.metrics import LATENCY_BUCKETS

requests_total = Counter(
    "sluice_api_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
request_seconds = Histogram(
    "sluice_api_request_seconds",
    "Time to the first response byte",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
auth_failures = Counter(
    "sluice_api_auth_failures_total", "Requests refused for their token", ["kind", "reason"]
)
sse_clients = Gauge("sluice_api_sse_clients", "Open Live Inspector streams")
inspector_events = Counter(
    "sluice_api_inspector_events_total", "Live Inspector events read from Kafka"
)
inspector_dropped = Counter(
    "sluice_api_inspector_dropped_total",
    "Live Inspector events dropped because a client read too slowly",
)
inspector_watched = Gauge(
    "sluice_api_inspector_watched_devices", "Devices with at least one open inspector stream"
)


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestMetrics:
    """Counts requests by route and status and times them; refuses oversized bodies (413)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        first_byte: float | None = None
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await _too_large(send, self.max_body)
            requests_total.labels(scope["method"], "unmatched", "413").inc()
            return

        async def send_measured(message: Message) -> None:
            nonlocal status, first_byte
            if message["type"] == "http.response.start":
                status = int(message["status"])
                first_byte = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_measured)
        finally:
            route = route_label(scope)
            requests_total.labels(scope["method"], route, str(status)).inc()
            request_seconds.labels(scope["method"], route).observe(
                (first_byte or time.perf_counter()) - started
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = b'{"status":false,"message":"Request body is larger than %d kB; send less at once"}' % (
        limit // 1024
    )
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
