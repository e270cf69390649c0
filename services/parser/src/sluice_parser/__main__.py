"""``sluice parser``: normalise, run payload parsers, validate."""

from __future__ import annotations

from functools import partial

from sluice.runtime import run_service
from sluice_parser.app import serve
from sluice_parser.settings import ParserSettings


def main() -> None:
    settings = ParserSettings()
    run_service("parser", settings, partial(serve, settings))


if __name__ == "__main__":
    main()
