"""``sluice run``: the embedded shape — Tansu, migrations, topics and all five services.

Each service runs as its own child process, exactly as it would in production; the
supervisor restarts one that dies and stops everything on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import logging
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

from sluice import bus, records
from sluice.embedded import BrokerStartError, EmbeddedKafka, free_port, port_in_use
from sluice.logs import configure_logging
from sluice.settings import SluiceSettings
from sluice.workers import RestartBudget

log = logging.getLogger("sluice.runner")

SERVICES = ("storage", "parser", "actions", "gateway", "api")
STATE_DIR = Path(".sluice")


class PortInUse(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    env: dict[str, str]
    health_url: str
    process: subprocess.Popen[bytes] | None = None
    restarts: RestartBudget = field(default_factory=lambda: RestartBudget(5))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"sluice_{self.name}"], env=self.env, stdin=subprocess.DEVNULL
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def check_ports(ports: dict[str, tuple[str, int, str]]) -> None:
    """Refuse to start when a port is taken, naming the knob that moves it."""
    for label, (host, port, knob) in ports.items():
        if port_in_use(host, port):
            raise PortInUse(
                f"{label} port {port} is already in use (is another broker or Sluice running?); "
                f"set {knob} to a free port, e.g. `{knob}={port + 1} make run`"
            )


def _http(method: str, url: str, token: str | None = None, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ensure_demo(api: str, admin_token: str, state_file: Path) -> dict[str, str]:
    """A demo account with one device and an insert action on every topic, kept across runs."""
    if state_file.exists():
        demo: dict[str, str] = json.loads(state_file.read_text())
        try:
            _http("GET", f"{api}/info", demo["device_token"])
            return demo
        except (urllib.error.URLError, KeyError):
            pass  # the database was reset: make a new demo
    account = _http("POST", f"{api}/account", admin_token, {"name": "demo", "plan": "scale"})[
        "result"
    ]
    account_token = account["token"]
    device = _http(
        "POST", f"{api}/device", account_token, {"name": "demo-device", "type": "mutable"}
    )["result"]
    _http(
        "POST",
        f"{api}/action",
        account_token,
        {
            "name": "store every message of demo-device",
            "active": True,
            "type": "mqtt_topic",
            "trigger": [{"device": device["device_id"], "topic": "#"}],
            "action": {"type": "insert"},
        },
    )
    demo = {
        "account_id": account["id"],
        "account_token": account_token,
        "device_id": device["device_id"],
        "device_token": device["token"],
    }
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(demo, indent=2))
    state_file.chmod(0o600)
    return demo


def banner(
    mqtt: str, mqtt_port: int, api: str, admin_token: str, demo: dict[str, str] | None, took: float
) -> str:
    lines = [
        "",
        f"Sluice is ready ({took:.1f} s).",
        f"  MQTT        mqtt://{mqtt}:{mqtt_port}   (username Token, password = a device token)",
        f"  HTTP API    {api}   (OpenAPI: {api}/docs)",
        f"  Admin token {admin_token}",
    ]
    if demo:
        lines += [
            f"  Demo account token {demo['account_token']}",
            f"  Demo device  {demo['device_id']}  token {demo['device_token']}",
            "",
            "Publish a data point and read it back:",
            f"  mosquitto_pub -h {mqtt} -p {mqtt_port} -u Token -P {demo['device_token']} -q 1 "
            f'-t sensors/demo -m \'{{"variable":"temperature","value":21.5,"unit":"C"}}\'',
            f"  curl -s -H 'device-token: {demo['device_token']}' "
            f"'{api}/data?variable=temperature&query=last_value'",
        ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def run_stack(demo: bool = True) -> int:
    from sluice_api.settings import ApiSettings
    from sluice_gateway.settings import GatewaySettings

    gateway = GatewaySettings()
    api_settings = ApiSettings()
    configure_logging("sluice", gateway.log_level, gateway.log_format)
    started = time.monotonic()
    ports = {
        "MQTT": (gateway.mqtt_host, gateway.mqtt_port, "SLUICE_MQTT_PORT"),
        "MQTT over WebSocket": (gateway.mqtt_host, gateway.ws_port, "SLUICE_WS_PORT"),
        "HTTP API": (api_settings.api_host, api_settings.api_port, "SLUICE_API_PORT"),
    }
    if gateway.tls_cert and gateway.tls_key:
        ports["MQTT over TLS"] = (gateway.mqtt_host, gateway.mqtts_port, "SLUICE_MQTTS_PORT")
    try:
        check_ports(ports)
    except PortInUse as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1

    STATE_DIR.mkdir(exist_ok=True)
    env = dict(os.environ)
    broker: EmbeddedKafka | None = None
    if not gateway.kafka_bootstrap:
        broker = EmbeddedKafka(log_path=STATE_DIR / "tansu.log")
        broker.start()
        env["SLUICE_KAFKA_BOOTSTRAP"] = broker.bootstrap
        env.setdefault("SLUICE_KAFKA_FAST_GROUPS", "true")
    admin_token = gateway.admin_token or os.urandom(16).hex()
    env["SLUICE_ADMIN_TOKEN"] = admin_token
    env["SLUICE_DATABASE_URL"] = gateway.database_url
    try:
        return _supervise(env, gateway, api_settings, admin_token, demo, started, broker)
    finally:
        if broker is not None:
            broker.stop()


def _supervise(
    env: dict[str, str],
    gateway: Any,
    api_settings: Any,
    admin_token: str,
    demo: bool,
    started: float,
    broker: EmbeddedKafka | None,
) -> int:
    from sluice_api.migrate import upgrade

    settings = SluiceSettings(kafka_bootstrap=env["SLUICE_KAFKA_BOOTSTRAP"])
    names = records.TopicNames(settings.topic_prefix)
    asyncio.run(upgrade(gateway.database_url))
    asyncio.run(bus.ensure_topics(settings, names))

    children: list[Child] = []
    for name in SERVICES:
        child_env = dict(env)
        if name == "api":
            url = f"http://127.0.0.1:{api_settings.api_port}/readyz"
        else:
            port = free_port()
            child_env["SLUICE_HEALTH_PORT"] = str(port)
            url = f"http://127.0.0.1:{port}/readyz"
        child = Child(name, child_env, url)
        child.start()
        children.append(child)

    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        deadline = time.monotonic() + 90
        pending = list(children)
        while pending and not stopping:
            pending = [c for c in pending if not _ready(c.health_url)]
            dead = [c for c in pending if not c.alive()]
            if dead:
                print(f"sluice: {dead[0].name} exited during start-up", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                late = ", ".join(c.name for c in pending)
                print(f"sluice: not ready after 90 s: {late}", file=sys.stderr)
                return 1
            time.sleep(0.1)
        if stopping:
            return 0
        api = f"http://127.0.0.1:{api_settings.api_port}"
        demo_info = ensure_demo(api, admin_token, STATE_DIR / "demo.json") if demo else None
        host = "localhost" if gateway.mqtt_host in ("0.0.0.0", "::") else gateway.mqtt_host
        print(
            banner(
                host, gateway.mqtt_port, api, admin_token, demo_info, time.monotonic() - started
            ),
            flush=True,
        )
        while not stopping:
            time.sleep(0.2)
            if (
                broker is not None
                and broker.process is not None
                and broker.process.poll() is not None
            ):
                try:
                    restart_after_broker_loss(broker, children, settings, names)
                except BrokerStartError as exc:
                    print(f"sluice: the embedded Kafka did not come back: {exc}", file=sys.stderr)
                    return 1
            for child in children:
                if not child.alive() and not stopping:
                    if not child.restarts.spend():
                        print(f"sluice: {child.name} keeps crashing; stopping", file=sys.stderr)
                        return 1
                    log.warning(
                        "%s exited (code %s); restarting",
                        child.name,
                        child.process and child.process.returncode,
                    )
                    child.start()
        return 0
    finally:
        for child in children:
            if child.alive() and child.process is not None:
                child.process.send_signal(signal.SIGTERM)
        for child in children:
            if child.process is not None:
                try:
                    child.process.wait(15)
                except subprocess.TimeoutExpired:
                    child.process.kill()


def restart_after_broker_loss(
    broker: EmbeddedKafka,
    children: list[Child],
    settings: SluiceSettings,
    names: records.TopicNames,
) -> None:
    """The embedded broker died: restart it and every service.

    Tansu keeps everything in memory, so the broker that comes back has no topics, no
    records and no committed offsets. A service left running would carry its positions on
    the old log over to the new one (a consumer committing, or a tail reading from, offsets
    that now name other records) and skip the first records published after the restart.
    So the services are killed before the broker returns (nothing of theirs reaches the new
    broker) and start again once the topics exist, reading the new log from its start.
    Devices reconnect and resend what was never acknowledged; what the old broker held and
    no service had consumed yet is lost (docs/operations.md: use Kafka for durability).
    """
    log.error(
        "embedded Kafka exited (code %s); restarting it and every service",
        broker.process.returncode if broker.process is not None else None,
    )
    for child in children:
        child.kill()
    broker.start()
    asyncio.run(bus.ensure_topics(settings, names))
    for child in children:
        child.start()


def create_topics_main() -> int:
    settings = SluiceSettings()
    configure_logging("topics", settings.log_level, settings.log_format)
    asyncio.run(bus.ensure_topics(settings, records.TopicNames(settings.topic_prefix)))
    return 0
