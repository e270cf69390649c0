"""``sluice api``: serve the REST API with uvicorn."""

from __future__ import annotations

import uvicorn

from sluice.logs import configure_logging
from sluice_api.app import create_app
from sluice_api.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    configure_logging("api", settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
