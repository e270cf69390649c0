"""The reliability and security suite: crashes, outages, hostile input, tenant isolation,
API fuzzing and parser escapes against live stacks (docs/reliability.md).

``make test`` runs every case at a reduced size; the full-size cases carry the ``chaos``
marker and run only with ``SLUICE_CHAOS=full`` (``make chaos``), which skips the reduced
variants they supersede.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the chaoslib helpers

from chaoslib.report import FIGURES, FULL


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: full-size reliability case, run by `make chaos` (SLUICE_CHAOS=full)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            if not FULL:
                item.add_marker(
                    pytest.mark.skip(
                        reason="full-size chaos case: `make chaos` (SLUICE_CHAOS=full)"
                    )
                )
        elif FULL:
            callspec = getattr(item, "callspec", None)
            if callspec is not None and "reduced" in callspec.id.split("-"):
                item.add_marker(pytest.mark.skip(reason="SLUICE_CHAOS=full runs the full size"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.write_sep("-", "chaos figures")
    for case, figures, text in FIGURES:
        terminalreporter.write_line(f"{case}: {json.dumps(figures, default=str)}")
        if text:
            terminalreporter.write_line(text)
