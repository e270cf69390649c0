"""``sluice storage``: write data points into buckets."""

from __future__ import annotations

from functools import partial

from sluice.runtime import run_service
from sluice_storage.app import serve
from sluice_storage.settings import StorageSettings


def main() -> None:
    settings = StorageSettings()
    run_service("storage", settings, partial(serve, settings))


if __name__ == "__main__":
    main()
