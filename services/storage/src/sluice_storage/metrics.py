"""Storage metrics (``sluice_storage_*``); dead letters are counted by ``sluice.bus``."""

from __future__ import annotations

from prometheus_client import Counter

points = Counter(
    "sluice_storage_points_total",
    "Data points by outcome: offered to the database (replays included), rejected, dropped",
    ["outcome"],
)
retention_deleted = Counter(
    "sluice_storage_retention_deleted_total",
    "Data points deleted because their chunk left an immutable device's retention",
)
retention_runs = Counter(
    "sluice_storage_retention_runs_total",
    "Retention passes over every immutable device",
    ["result"],
)
