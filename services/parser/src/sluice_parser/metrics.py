"""Parser metrics (served on the health port's /metrics with the shared ones)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# A typical decoder runs in ~50 µs; the time limit is 1 s.
RUN_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

# ok | error | timeout | memory | internal | too_large | unknown_builtin | invalid | suspended
parser_runs = Counter(
    "sluice_parser_runs_total",
    "Payload-parser runs by outcome (invalid: the output failed validation; suspended: not "
    "run because the device's parser recently hit a limit)",
    ["outcome"],
)
parser_seconds = Histogram(
    "sluice_parser_seconds",
    "Wall-clock seconds of one payload-parser run, conversions included",
    buckets=RUN_BUCKETS,
)
