"""``sluice api``: serve the REST API with uvicorn."""

from __future__ import annotations

import socket

import uvicorn

from sluice.logs import configure_logging
from sluice_api.app import create_app
from sluice_api.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    configure_logging("api", settings.log_level, settings.log_format)
    listen: dict[str, object] = {"host": settings.api_host, "port": settings.api_port}
    if settings.reuse_port:
        # Several API workers share the port (sluice api --workers N).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((settings.api_host, settings.api_port))
        listen = {"fd": sock.fileno()}
    uvicorn.run(
        create_app(settings),
        **listen,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
