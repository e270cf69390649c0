"""A whole Sluice stack in child processes, for end-to-end tests and benchmarks.

The same ``python -m sluice_<service>`` commands as production, on free ports, against
a given Kafka bootstrap, topic prefix and database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sluice.embedded import free_port

SERVICES = ("storage", "parser", "actions", "gateway", "api")
_handed_out: set[int] = set()


def unique_port() -> int:
    """A free port this process has not handed out before (ports are bound only later, by
    the children, so two picks in a row could otherwise collide)."""
    while True:
        port = free_port()
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    health_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    argv: list[str] | None = None  # default: python -m sluice_<name>

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            self.argv or [sys.executable, "-m", f"sluice_{self.name}"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL, 5)


@dataclass
class Stack:
    kafka_bootstrap: str
    database_url: str
    topic_prefix: str
    log_dir: Path
    admin_token: str = "test-admin-token"
    services: tuple[str, ...] = SERVICES
    extra_env: dict[str, str] = field(default_factory=dict)
    mqtt_port: int = field(default_factory=unique_port)
    ws_port: int = field(default_factory=unique_port)
    api_port: int = field(default_factory=unique_port)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        env.update(
            {
                "SLUICE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "SLUICE_DATABASE_URL": self.database_url,
                "SLUICE_TOPIC_PREFIX": self.topic_prefix,
                # Stacks may share one broker: consumer groups of their own, so one stack
                # starting or stopping never rebalances another's consumers.
                "SLUICE_ACTIONS_GROUP": f"{self.topic_prefix}actions",
                "SLUICE_ACTIONS_JOBS_GROUP": f"{self.topic_prefix}actions-jobs",
                "SLUICE_PARSER_GROUP": f"{self.topic_prefix}parser",
                "SLUICE_STORAGE_GROUP": f"{self.topic_prefix}storage",
                "SLUICE_ADMIN_TOKEN": self.admin_token,
                "SLUICE_KAFKA_FAST_GROUPS": "true",
                "SLUICE_MQTT_HOST": "127.0.0.1",
                "SLUICE_MQTT_PORT": str(self.mqtt_port),
                "SLUICE_WS_PORT": str(self.ws_port),
                "SLUICE_API_HOST": "127.0.0.1",
                "SLUICE_API_PORT": str(self.api_port),
                "SLUICE_LOG_LEVEL": "INFO",
                # Many tests log in badly from 127.0.0.1; the throttle has its own test.
                "SLUICE_AUTH_FAILURES_PER_MINUTE": "100000",
            }
        )
        env.update(self.extra_env)
        return env

    def add(self, name: str, **env: str) -> ServiceProcess:
        """Create (not start) one service process; several gateways get their own names."""
        service = name.split("-", 1)[0]
        child_env = {**self.env(), **env}
        if service == "api":
            url = f"http://127.0.0.1:{child_env['SLUICE_API_PORT']}/readyz"
        else:
            port = unique_port()
            child_env["SLUICE_HEALTH_PORT"] = str(port)
            child_env["SLUICE_HEALTH_HOST"] = "127.0.0.1"
            url = f"http://127.0.0.1:{port}/readyz"
        proc = ServiceProcess(service, child_env, url, self.log_dir / f"{name}.log")
        self.processes[name] = proc
        return proc

    def start(self, timeout: float = 60) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.services:
            self.add(name).start()
        self.wait_ready(list(self.processes), timeout)

    def wait_ready(self, names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = [self.processes[n] for n in names]
        while pending:
            pending = [p for p in pending if not p.ready()]
            for proc in pending:
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited during start-up:\n{self.tail(proc)}")
            if time.monotonic() > deadline:
                names_left = ", ".join(p.name for p in pending)
                logs = "\n".join(self.tail(p) for p in pending)
                raise RuntimeError(f"not ready after {timeout}s: {names_left}\n{logs}")
            time.sleep(0.05)

    def restart(self, name: str, timeout: float = 60) -> None:
        proc = self.processes[name]
        proc.stop()
        proc.start()
        self.wait_ready([name], timeout)

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            proc.stop()

    def tail(self, proc: ServiceProcess, lines: int = 40) -> str:
        try:
            text = proc.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"--- {proc.name} ---\n" + "\n".join(text)

    def logs(self) -> str:
        return "\n".join(self.tail(p, 80) for p in self.processes.values())

    # REST conveniences used by tests and benchmarks.
    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=30)

    def create_plan(self, name: str, based_on: str = "scale", **limits: Any) -> str:
        """A custom plan (admin API); an existing one of that name is kept."""
        with self.client(self.admin_token) as http:
            response = http.post(
                "/plan", json={"name": name, "based_on": based_on, "limits": limits}
            )
            if response.status_code != 409:
                response.raise_for_status()
        return name

    def unlimited_plan(self) -> str:
        """For load, fuzz and benchmark traffic: limits far above what they send."""
        big = 10**9
        return self.create_plan(
            "load-test",
            mqtt_connect_per_min=big,
            mqtt_publish_per_min=big,
            mqtt_subscribe_receive_per_min=big,
            data_post_per_min=big,
            data_get_per_min=big,
            data_edit_per_min=big,
            device_token_per_min=big,
            max_connections=big,
            max_subscriptions_per_connection=100_000,
            max_inflight=65_535,
        )

    def create_account(self, name: str = "acme", plan: str = "scale") -> dict[str, Any]:
        with self.client(self.admin_token) as http:
            response = http.post("/account", json={"name": name, "plan": plan})
            response.raise_for_status()
            result: dict[str, Any] = response.json()["result"]
            return result

    def create_device(self, account_token: str, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "device")
        with self.client(account_token) as http:
            response = http.post("/device", json=body)
            response.raise_for_status()
            result: dict[str, Any] = response.json()["result"]
            return result

    def create_action(self, account_token: str, **body: Any) -> str:
        with self.client(account_token) as http:
            response = http.post("/action", json=body)
            response.raise_for_status()
            action: str = response.json()["result"]["action"]
            return action

    def insert_action(self, account_token: str, device_id: str, topic: str = "#") -> str:
        return self.create_action(
            account_token,
            name=f"insert {topic}",
            type="mqtt_topic",
            trigger=[{"device": device_id, "topic": topic}],
            action={"type": "insert"},
        )
