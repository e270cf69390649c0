"""``sluice <service> --workers N``: N processes of one service on one machine.

Gateway workers share the MQTT ports with SO_REUSEPORT (the kernel spreads connections)
and act as separate nodes (cross-worker delivery goes through Kafka like cross-node);
consumer workers join the service's consumer group. The parent restarts a worker that
dies and passes SIGTERM on, so a container or systemd sees one process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

log = logging.getLogger("sluice.workers")


class RestartBudget:
    """Restart what crashed, unless it crashed more than ``limit`` times in a minute."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.times: list[float] = []

    def spend(self) -> bool:
        now = time.monotonic()
        self.times = [t for t in self.times if now - t < 60] + [now]
        return len(self.times) <= self.limit


def worker_env(service: str, index: int, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env["SLUICE_WORKERS"] = "1"
    env["SLUICE_WORKER_INDEX"] = str(index)
    env["SLUICE_REUSE_PORT"] = "true"
    node = base.get("SLUICE_NODE_ID") or f"{os.uname().nodename}-{os.getpid()}"
    env["SLUICE_NODE_ID"] = f"{node}-w{index}"
    health = base.get("SLUICE_HEALTH_PORT")
    if health:
        env["SLUICE_HEALTH_PORT"] = str(int(health) + index)
    return env


def run_workers(service: str, count: int) -> int:
    """Start ``count`` workers of ``service`` and supervise them until SIGTERM/SIGINT."""
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    base = dict(os.environ)

    def spawn(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", f"sluice_{service}"], env=worker_env(service, index, base)
        )

    workers = [spawn(i) for i in range(count)]
    budget = RestartBudget(5 * count)
    while not stopping:
        time.sleep(0.2)
        for index, proc in enumerate(workers):
            if proc.poll() is not None and not stopping:
                if not budget.spend():
                    log.error("%s workers keep exiting; giving up", service)
                    stopping = True
                    break
                log.warning("%s worker %d exited (%s); restarting", service, index, proc.returncode)
                workers[index] = spawn(index)
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    code = 0
    for proc in workers:
        try:
            code = code or (proc.wait(20) or 0)
        except subprocess.TimeoutExpired:
            proc.kill()
    return code
