"""Sizes of the suite's cases and the figures they report.

Every size-dependent case runs at a reduced size in ``make test`` and at full size (marker
``chaos``) in ``make chaos`` (``SLUICE_CHAOS=full``); tests/chaos/conftest.py picks which.
The figures each case reports are printed as it ends and again in the run's summary.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

FULL = os.environ.get("SLUICE_CHAOS") == "full"
FULL_TIMEOUT = 1800  # seconds, per full-size case
# Seconds the stored rows must stay unchanged before they are judged (late replays show up).
SETTLE = 10.0 if FULL else 3.0
FIGURES: list[tuple[str, dict[str, Any], str]] = []


def sizes(reduced: Any, full: Any) -> list[Any]:
    """Parameters for ``@pytest.mark.parametrize("size", ...)``: reduced, then full
    (``full`` may be a dict of several full-size variants by name)."""
    marks = [pytest.mark.chaos, pytest.mark.timeout(FULL_TIMEOUT)]
    variants = full if isinstance(full, dict) else {"": full}
    return [
        pytest.param(reduced, id="reduced"),
        *(
            pytest.param(value, id=f"full-{name}" if name else "full", marks=marks)
            for name, value in variants.items()
        ),
    ]


def report(case: str, figures: dict[str, Any], text: str = "") -> None:
    """Record a case's figures (``text``: a table printed below them)."""
    FIGURES.append((case, figures, text))
    print(f"\n[chaos] {case}: {json.dumps(figures, default=str)}\n{text}".rstrip())


def format_matrix(rows: list[tuple[str, int, int]], title: str) -> str:
    width = max(len(path) for path, _, _ in rows)
    lines = [title, f"{'path'.ljust(width)}  attempts  leaks"]
    lines += [f"{path.ljust(width)}  {attempts:>8}  {leaks:>5}" for path, attempts, leaks in rows]
    return "\n".join(lines)
