#!/usr/bin/env python3
"""Container health check: exit 0 when this container's Sluice service is ready.

Installed in the image as ``sluice-healthcheck``. The gateway, actions, parser and storage
serve /readyz on ``SLUICE_HEALTH_PORT``; the API serves it on ``SLUICE_API_PORT`` (8000).
Standard library only, so it runs under any Python in the image.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping


def probe_url(environ: Mapping[str, str], path: str = "/readyz") -> str:
    port = environ.get("SLUICE_HEALTH_PORT") or environ.get("SLUICE_API_PORT") or "8000"
    return f"http://127.0.0.1:{port}{path}"


def main(argv: list[str]) -> int:
    url = probe_url(os.environ, argv[1] if len(argv) > 1 else "/readyz")
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()
        print(f"{url}: {exc.code} {body}", file=sys.stderr)
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
