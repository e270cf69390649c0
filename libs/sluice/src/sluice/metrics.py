"""Prometheus metrics every service shares (one registry per process, served on /metrics).

Service-specific metrics live next to their code but use the ``sluice_`` prefix and the
label names below, so one dashboard reads every service.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

records_consumed = Counter(
    "sluice_records_consumed_total", "Kafka records a consumer loop processed", ["service", "topic"]
)
records_produced = Counter(
    "sluice_records_produced_total", "Kafka records a service produced", ["service", "topic"]
)
batch_seconds = Histogram(
    "sluice_batch_seconds",
    "Time to process one consumed batch",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
batch_failures = Counter(
    "sluice_batch_failures_total", "Consumed batches that failed and were retried", ["service"]
)
consumer_lag = Gauge(
    "sluice_consumer_lag", "Records between the committed offset and the end", ["service", "topic"]
)
dead_letters = Counter(
    "sluice_dead_letters_total", "Records sent to the dead-letter topic", ["service", "reason"]
)
limit_hits = Counter(
    "sluice_limit_hits_total",
    "Requests or messages refused or dropped by a limit",
    ["service", "limit"],
)
control_events = Counter(
    "sluice_control_events_total",
    "Control events published on sluice.control (config changes, watches)",
    ["service", "type"],
)
