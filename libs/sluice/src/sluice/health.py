"""A tiny HTTP server for the non-HTTP services: /healthz, /readyz and /metrics.

Kubernetes probes and Prometheus scrape these; the API serves the same routes itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("sluice.health")

ReadinessCheck = Callable[[], Awaitable[str | None]]  # None when ready, else the reason


class HealthServer:
    def __init__(self, host: str, port: int, checks: dict[str, ReadinessCheck] | None = None):
        self.host = host
        self.port = port
        self.checks = checks or {}
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("health endpoints on http://%s:%d/healthz", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def readiness(self) -> dict[str, str]:
        """Reasons for not being ready, by check name (empty when ready)."""
        problems: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                reason = await asyncio.wait_for(check(), 2.0)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                problems[name] = reason
        return problems

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            path = request.split(b" ", 2)[1].split(b"?")[0].decode()
            if path == "/healthz":
                status, ctype, body = 200, "text/plain", b"ok\n"
            elif path == "/readyz":
                problems = await self.readiness()
                status = 503 if problems else 200
                ctype = "text/plain"
                body = (
                    "".join(f"{k}: {v}\n" for k, v in problems.items()) if problems else "ready\n"
                ).encode()
            elif path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest()
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, IndexError, ConnectionError):
            pass
        finally:
            writer.close()
