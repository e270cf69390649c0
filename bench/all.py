"""``make bench``: every benchmark of the project, one JSON line per scenario, then the
results block of docs/benchmarks.md and docs/benchmarks.png are rewritten from this run.

    .venv/bin/python bench/all.py [--quick] [--skip NAME ...]

Scenarios: the MQTT ones of bench/run.py (each beside Mosquitto where a ratio makes
sense) and ingest-e2e; storage (consumer into PostgreSQL) and api-read (1M points) from
services/storage/bench/storage_bench.py; parser (one parser process end to end) from
services/parser/bench/parser_service_bench.py (with the decoder, then with no parser as
the ceiling around it); actions from services/actions/bench.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PARSER_BENCH = str(ROOT / "services/parser/bench/parser_service_bench.py")

SUITES: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, quick arguments)
    "mqtt": (
        [str(ROOT / "bench/run.py")],
        [str(ROOT / "bench/run.py"), "--quick"],
    ),
    "storage": (
        [str(ROOT / "services/storage/bench/storage_bench.py")],
        [
            str(ROOT / "services/storage/bench/storage_bench.py"),
            "--points",
            "20000",
            "--devices",
            "10",
            "--requests",
            "50",
        ],
    ),
    "parser": (
        [PARSER_BENCH, "--count", "50000"],
        [PARSER_BENCH, "--count", "2000"],
    ),
    # The same service and records with no parser: what the service costs around a parser
    # on this machine (the ceiling no parser could pass), for reading the figure above.
    "parser-none": (
        [PARSER_BENCH, "--count", "50000", "--parser", "none"],
        [PARSER_BENCH, "--count", "2000", "--parser", "none"],
    ),
    "actions": (
        [
            str(ROOT / "services/actions/bench/actions_bench.py"),
            "--count",
            "20000",
            "--calls",
            "50",
        ],
        [str(ROOT / "services/actions/bench/actions_bench.py"), "--count", "500", "--calls", "5"],
    ),
}


def run_suite(name: str, quick: bool) -> list[dict[str, Any]]:
    full, small = SUITES[name]
    argv = [PY, *(small if quick else full)]
    print(f"== {name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    lines = []
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            doc.setdefault("suite", name)
            lines.append(doc)
            print(json.dumps(doc), flush=True)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{name} benchmark failed (exit {done.returncode})")
    return lines


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "load_1m_at_start": round(load[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(SUITES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/latest.jsonl")
    parser.add_argument(
        "--no-report", action="store_true", help="do not rewrite docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    info = machine()
    lines: list[dict[str, Any]] = []
    for name in SUITES:
        if name not in args.skip:
            lines += run_suite(name, args.quick)
    info["load_1m_at_end"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(line) + "\n" for line in [{"machine": info}, *lines]))
    if not args.no_report and not args.quick:
        from report import write_report

        write_report(info, lines, ROOT / "docs/benchmarks.md", ROOT / "docs/benchmarks.png")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
