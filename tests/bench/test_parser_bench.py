"""The parser benchmark runs in a tiny configuration, with each choice of parser, so the
figure `make bench` reports (and the ceiling beside it) never rots.

No timings are asserted: the bench itself waits until every payload is a data record.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize(("parser", "items"), [("decoder", 5.5), ("none", 1.0)])
def test_parser_bench_runs_end_to_end(parser: str, items: float) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "services/parser/bench/parser_service_bench.py"),
            "--count",
            "400",
            "--warmup",
            "100",
            "--devices",
            "20",
            "--parser",
            parser,
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert (line["bench"], line["parser"], line["payloads"]) == ("parser_service", parser, 400)
    assert line["items_per_payload"] == items
    assert line["payloads_per_s"] > 0
