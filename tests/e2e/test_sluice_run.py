"""`sluice run`, what `make run` starts: the embedded broker, all five services as child
processes, the demo device, and what the supervisor does when a child or the broker dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sluice.embedded import free_port
from sluice.testing.mqtt import Client, MqttTimeout, wait_for


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    output: Path
    mqtt_port: int
    api: str
    demo: dict[str, str]

    def children(self) -> dict[str, int]:
        """Child processes of the supervisor by name (`tansu`, `sluice_storage`, ...)."""
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != self.process.pid:
                continue
            args = [a.decode() for a in cmdline if a]
            if args[1:2] == ["broker"]:  # the Tansu binary: `<tansu> broker --listener-url ...`
                found["tansu"] = int(entry.name)
            elif "-m" in args:
                found[args[args.index("-m") + 1]] = int(entry.name)
        return found

    def values(self, variable: str, qty: int = 1000) -> list[Any]:
        """Stored values of the demo device (none while the API is restarting)."""
        try:
            response = httpx.get(
                f"{self.api}/data",
                params={"variable": variable, "qty": qty},
                headers={"device-token": self.demo["device_token"]},
                timeout=10,
            )
        except httpx.TransportError:
            return []
        assert response.status_code == 200, response.text
        return [item["value"] for item in response.json()["result"]]

    def publish(self, variable: str, values: range, timeout: float = 60) -> None:
        """Publish QoS 1 until every value is acknowledged, reconnecting while the stack
        comes back (a refused or unanswered connect, a connection the gateway drops)."""
        deadline = time.monotonic() + timeout
        pending = list(values)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} publishes never acknowledged"
            client = Client(self.mqtt_port, self.demo["device_token"], version=5)
            try:
                if client.connect(timeout=3) != 0:
                    time.sleep(0.5)
                    continue
                while pending:
                    payload = json.dumps({"variable": variable, "value": pending[0]})
                    assert client.publish("sensors/demo", payload, qos=1, wait=5) == 0
                    pending.pop(0)
                client.disconnect()
            except (MqttTimeout, OSError):
                client.drop()
                time.sleep(0.5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningStack]:
    mqtt_port, ws_port, api_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(
        SLUICE_MQTT_PORT=str(mqtt_port),
        SLUICE_WS_PORT=str(ws_port),
        SLUICE_API_PORT=str(api_port),
        SLUICE_LOG_LEVEL="INFO",
    )
    output = tmp_path / "sluice-run.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sluice.cli", "run"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 120
        while "Sluice is ready" not in output.read_text(errors="replace"):
            assert process.poll() is None, output.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, output.read_text(errors="replace")[-4000:]
            time.sleep(0.2)
        demo = json.loads((tmp_path / ".sluice" / "demo.json").read_text())
        yield RunningStack(process, output, mqtt_port, f"http://127.0.0.1:{api_port}", demo)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_sluice_run_survives_a_dead_service_and_a_dead_broker(running: RunningStack) -> None:
    log = lambda: running.output.read_text(errors="replace")[-6000:]  # noqa: E731

    # The quick start: the demo device's QoS 1 publish is stored and readable.
    running.publish("before", range(5))
    wait_for(lambda: len(running.values("before")) == 5, timeout=30, what="stored 'before'")

    # A service dies: the supervisor starts it again and nothing acknowledged is lost.
    children = running.children()
    assert {"tansu", "sluice_gateway", "sluice_storage", "sluice_api"} <= set(children), children
    os.kill(children["sluice_storage"], signal.SIGKILL)
    running.publish("storage_killed", range(20))
    wait_for(
        lambda: sorted(running.values("storage_killed")) == list(range(20)),
        timeout=60,
        what=f"every value published while storage restarted\n{log()}",
    )

    # The embedded broker dies (it keeps everything in memory, so the one that comes back
    # is empty): the supervisor restarts it and every service, devices reconnect, and every
    # message acknowledged after that is stored exactly once.
    tansu = children["tansu"]
    os.kill(tansu, signal.SIGKILL)
    wait_for(
        lambda: running.children().get("tansu", tansu) != tansu,
        timeout=30,
        what=f"a new broker\n{log()}",
    )
    running.publish("after_broker", range(200), timeout=120)
    wait_for(
        lambda: sorted(running.values("after_broker")) == list(range(200)),
        timeout=60,
        what=f"every value acknowledged after the broker restart\n{log()}",
    )
    assert "restarting it and every service" in log()
    # What was stored before the broker died is in SQL, not in the broker.
    assert sorted(running.values("before")) == list(range(5))

    # Ctrl-C / SIGTERM stops everything it started, broker included.
    pids = running.children()
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(60) == 0, log()
    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"{name} still running"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
