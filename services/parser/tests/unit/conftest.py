from __future__ import annotations

from typing import Any

import pytest

from sluice_parser import realm


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the batches the engine runs (ParserRealm.run_batch) during the test."""
    sizes: list[int] = []
    original = realm.ParserRealm.run_batch

    def spy(self: realm.ParserRealm, runs: Any, time_limit: float) -> Any:
        sizes.append(len(runs))
        return original(self, runs, time_limit)

    monkeypatch.setattr(realm.ParserRealm, "run_batch", spy)
    return sizes
