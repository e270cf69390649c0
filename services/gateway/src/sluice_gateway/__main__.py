"""``sluice gateway``: the MQTT edge."""

from __future__ import annotations

import sys
from functools import partial

from sluice.runtime import run_service
from sluice_gateway.app import PortInUse, serve
from sluice_gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    try:
        run_service("gateway", settings, partial(serve, settings))
    except PortInUse as exc:
        print(f"sluice gateway: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
