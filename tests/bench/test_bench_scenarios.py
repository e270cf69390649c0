"""Every benchmark scenario runs in its tiny configuration, so the suite never rots.

No timings are asserted: a scenario must produce its JSON line with the figures it
promises, and deliver what was published.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_scenario_runs_in_the_quick_configuration(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by = {(line["scenario"], line.get("broker", line.get("mode"))): line for line in lines}
    assert by[("qos1-publish", "sluice")]["acked"] > 0
    assert by[("qos1-publish", "mosquitto")]["acked"] > 0
    assert by[("fan-in", "sluice")]["received"] > 0
    p2p = by[("p2p", "sluice")]
    assert p2p["delivered"] == p2p["published"] > 0
    fan_out = by[("fan-out", "sluice")]
    assert fan_out["delivered"] == fan_out["published"] * fan_out["subscribers"]
    assert by[("conn-10k", "sluice")]["connections"] == 50
    workers = [line for line in lines if line["scenario"] == "gateway-workers"]
    assert [w["workers"] for w in workers] == [1, 2]
    assert all(w["acked"] > 0 for w in workers)
    sustained = by[("ingest-e2e", "sustained")]
    assert sustained["rows"] == sustained["acked"] > 0  # every acknowledged publish stored
