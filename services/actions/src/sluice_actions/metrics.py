"""Metrics of the actions service (``sluice_action_*``), next to the shared ones."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from sluice.metrics import LATENCY_BUCKETS

# outcome: fired (trigger matched, work handed on) | success | retry | failed | error
executions = Counter(
    "sluice_action_executions_total",
    "Action executions and attempts by action type and outcome",
    ["type", "outcome"],
)
attempt_seconds = Histogram(
    "sluice_action_attempt_seconds",
    "Duration of one webhook call or e-mail send",
    ["type"],
    buckets=(*LATENCY_BUCKETS, 30.0),
)
jobs_pending = Gauge(
    "sluice_action_jobs_pending", "Webhook and e-mail jobs read and not finished yet"
)
jobs_running = Gauge("sluice_action_jobs_running", "Webhook calls and e-mail sends in progress")
lock_changes = Counter(
    "sluice_action_lock_changes_total", "Condition actions locked or unlocked by data", ["state"]
)
fallbacks = Counter(
    "sluice_action_fallbacks_total", "Webhook data handed to a fallback device after the last try"
)
