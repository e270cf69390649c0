"""Turn one ``bench/all.py`` run into the results block of docs/benchmarks.md and a chart.

Only the text between the ``results`` markers is rewritten; the rest of the document
(method, history of what changed each figure) is written by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

START = "<!-- results:start -->"
END = "<!-- results:end -->"


def _find(lines: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for line in lines:
        if all(line.get(k) == v for k, v in match.items()):
            return line
    return None


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:,.1f}"
    else:
        text = f"{int(value):,}"
    return f"{text} {unit}".strip()


def _ratio(ours: Any, theirs: Any) -> str:
    if not ours or not theirs:
        return "—"
    return f"{ours / theirs:.2f}×"


def rows(lines: list[dict[str, Any]]) -> list[tuple[str, str, str, str, str, str]]:
    """(scenario, figure, Sluice, Mosquitto, ratio, target and verdict)."""
    out: list[tuple[str, str, str, str, str, str]] = []

    def pair(
        scenario: str, key: str, label: str, unit: str, target: float | None, lower: bool = False
    ) -> None:
        ours = _find(lines, scenario=scenario, broker="sluice")
        theirs = _find(lines, scenario=scenario, broker="mosquitto")
        if ours is None:
            return
        value = ours.get(key)
        verdict = ""
        if target is not None and value is not None:
            met = value <= target if lower else value >= target
            verdict = f"{'≤' if lower else '≥'} {_fmt(target)}: {'met' if met else 'NOT met'}"
        out.append(
            (
                scenario,
                label,
                _fmt(value, unit),
                _fmt(theirs.get(key) if theirs else None, unit),
                _ratio(value, theirs.get(key) if theirs else None),
                verdict,
            )
        )

    pair(
        "qos1-publish",
        "msgs_per_s",
        "QoS 1 publishes acked/s (10 publishers, 64 B; Sluice acks after Kafka)",
        "",
        60_000,
    )
    pair("fan-in", "msgs_per_s", "QoS 0 fan-in delivered/s (10 → 1, offered 70k/s)", "", 60_000)
    pair("fan-in", "p99_ms", "fan-in p99 latency", "ms", None)
    pair("p2p", "delivered_per_s", "p2p QoS 1 delivered/s (100 pairs)", "", None)
    pair("p2p", "p99_ms", "p2p p99 latency", "ms", None)
    pair("fan-out", "delivered_per_s", "fan-out QoS 0 delivered/s (1 → 1000, 20 msg/s)", "", None)
    pair("fan-out", "p99_ms", "fan-out p99 latency", "ms", None)
    conn = _find(lines, scenario="conn-10k")
    if conn:
        rss = conn["rss_peak_mb"]
        out.append(
            (
                "conn-10k",
                "RSS of one gateway with 10k idle connections",
                _fmt(rss, "MB"),
                "—",
                "—",
                f"≤ 300 MB: {'met' if rss <= 300 else 'NOT met'}",
            )
        )
        out.append(
            (
                "conn-10k",
                "connects/s",
                _fmt(conn["connects_per_s"]),
                "—",
                "—",
                f"≥ 1,000: {'met' if conn['connects_per_s'] >= 1000 else 'NOT met'}",
            )
        )
        out.append(
            (
                "conn-10k",
                "RSS per connection",
                _fmt(conn["rss_per_connection_kb"], "kB"),
                "—",
                "—",
                "",
            )
        )
    for workers in (1, 2):
        w = _find(lines, scenario="gateway-workers", workers=workers)
        if w:
            out.append(
                (
                    "gateway-workers",
                    f"QoS 1 acked/s, gateway --workers {workers}",
                    _fmt(w["msgs_per_s"]),
                    "—",
                    "—",
                    "",
                )
            )
    sustained = _find(lines, scenario="ingest-e2e", mode="sustained")
    if sustained:
        rate = sustained["rows_per_s"]
        out.append(
            (
                "ingest-e2e",
                "rows/s into PostgreSQL, whole pipeline, sustained",
                _fmt(rate),
                "—",
                "—",
                f"≥ 15,000: {'met' if rate >= 15_000 else 'NOT met'}",
            )
        )
    fixed = next(
        (
            line
            for line in lines
            if line.get("scenario") == "ingest-e2e" and line.get("mode") != "sustained"
        ),
        None,
    )
    if fixed:
        out.append(
            (
                "ingest-e2e",
                f"publish→row p50 at {fixed['mode']}",
                _fmt(fixed["p50_ms"], "ms"),
                "—",
                "—",
                "",
            )
        )
        out.append(
            (
                "ingest-e2e",
                f"publish→row p99 at {fixed['mode']}",
                _fmt(fixed["p99_ms"], "ms"),
                "—",
                "—",
                f"≤ 1,000 ms: {'met' if fixed['p99_ms'] <= 1000 else 'NOT met'}",
            )
        )
    storage = _find(lines, bench="storage_consumer_postgresql")
    if storage:
        out.append(
            (
                "storage",
                "data points/s into PostgreSQL (one storage process)",
                _fmt(storage["points_per_s"]),
                "—",
                "—",
                f"≥ 30,000: {'met' if storage['points_per_s'] >= 30_000 else 'NOT met'}",
            )
        )
    for bench, label in (("get_data_last_value", "last_value"), ("get_data_qty_100", "qty=100")):
        read = _find(lines, bench=bench)
        if read:
            target = 20 if label == "last_value" else None
            verdict = f"≤ 20 ms: {'met' if read['p99_ms'] <= 20 else 'NOT met'}" if target else ""
            out.append(
                (
                    "api-read",
                    f"GET /data {label} p99 ({_fmt(read['stored_points'])} points)",
                    _fmt(read["p99_ms"], "ms"),
                    "—",
                    "—",
                    verdict,
                )
            )
    # The decoder's figure, and beside it the same service with no parser (its ceiling).
    for variant, figure in (
        ("decoder", "payloads/s through one parser process (30-line Buffer decoder)"),
        ("none", "the same with no parser (Kafka, normalisation, validation only)"),
    ):
        parser = _find(lines, bench="parser_service", parser=variant)
        if parser is None:
            continue
        rate = parser["payloads_per_s"]
        verdict = f"≥ 20,000: {'met' if rate >= 20_000 else 'NOT met'}"
        if variant == "none":
            verdict = "reference: the ceiling around any parser"
        out.append(("parser", figure, _fmt(rate), "—", "—", verdict))
    actions = _find(lines, suite="actions")
    if actions:
        out.append(
            (
                "actions",
                "condition records → mqtt actions/s",
                _fmt(actions["records_per_s"]),
                "—",
                "—",
                "",
            )
        )
    return out


def write_report(info: dict[str, Any], lines: list[dict[str, Any]], doc: Path, chart: Path) -> None:
    table = rows(lines)
    block = [
        START,
        f"Run of {info['date']} on {info['cpus']} × {info['cpu']}; load average "
        f"{info['load_1m_at_start']} at the start, {info.get('load_1m_at_end', '?')} at the end. "
        "Everything (load tool, Tansu, PostgreSQL, Mosquitto, the services) on this machine.",
        "",
        "| scenario | figure | Sluice | Mosquitto | ratio | target |",
        "|---|---|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} | {e} | {f} |" for a, b, c, d, e, f in table),
        "",
        "![throughput and latency](benchmarks.png)",
        END,
    ]
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    doc.write_text(head + "\n".join(block) + tail)
    _chart(lines, chart)


def _chart(lines: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [
        ("qos1-publish", "msgs_per_s"),
        ("fan-in", "msgs_per_s"),
        ("p2p", "delivered_per_s"),
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels, ours, theirs = [], [], []
    for scenario, key in scenarios:
        s = _find(lines, scenario=scenario, broker="sluice")
        m = _find(lines, scenario=scenario, broker="mosquitto")
        if s:
            labels.append(scenario)
            ours.append(s.get(key) or 0)
            theirs.append((m or {}).get(key) or 0)
    xs = range(len(labels))
    left.bar([x - 0.2 for x in xs], ours, width=0.4, label="Sluice")
    left.bar([x + 0.2 for x in xs], theirs, width=0.4, label="Mosquitto")
    left.set_xticks(list(xs), labels)
    left.set_ylabel("messages / s")
    left.set_title("Throughput (same machine, same run)")
    left.legend()
    lat_labels, lat_ours, lat_theirs = [], [], []
    for scenario in ("fan-in", "p2p", "fan-out"):
        s = _find(lines, scenario=scenario, broker="sluice")
        m = _find(lines, scenario=scenario, broker="mosquitto")
        if s:
            lat_labels.append(scenario)
            lat_ours.append(s.get("p99_ms") or 0)
            lat_theirs.append((m or {}).get("p99_ms") or 0)
    fixed = next(
        (
            line
            for line in lines
            if line.get("scenario") == "ingest-e2e" and line.get("mode") != "sustained"
        ),
        None,
    )
    if fixed:
        lat_labels.append("ingest→row")
        lat_ours.append(fixed["p99_ms"])
        lat_theirs.append(0)
    xs = range(len(lat_labels))
    right.bar([x - 0.2 for x in xs], lat_ours, width=0.4, label="Sluice")
    right.bar([x + 0.2 for x in xs], lat_theirs, width=0.4, label="Mosquitto")
    right.set_xticks(list(xs), lat_labels)
    right.set_ylabel("p99 latency (ms)")
    right.set_title("p99 latency")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
