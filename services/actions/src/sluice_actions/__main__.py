"""``sluice actions``: run actions on topics and variable conditions."""

from __future__ import annotations

from functools import partial

from sluice.runtime import run_service
from sluice_actions.app import serve
from sluice_actions.settings import ActionsSettings


def main() -> None:
    settings = ActionsSettings()
    run_service("actions", settings, partial(serve, settings))


if __name__ == "__main__":
    main()
