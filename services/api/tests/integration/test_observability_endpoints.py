"""Every service answers /healthz, /readyz and a Prometheus /metrics that the official
parser reads; the API labels requests by route; readiness names what is missing."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sluice.embedded import free_port
from sluice.testing.mqtt import Client, wait_for
from sluice.testing.stack import SERVICES, Stack

OPERATIONS = Path(__file__).resolve().parents[4] / "docs" / "operations.md"
SHARED_CONSUMER = {
    "sluice_records_consumed",
    "sluice_batch_seconds",
    "sluice_consumer_lag",
    "sluice_dead_letters",
}
EXPECTED = {
    "api": {
        "sluice_api_requests",
        "sluice_api_request_seconds",
        "sluice_api_auth_failures",
        "sluice_api_sse_clients",
        "sluice_api_inspector_events",
        "sluice_api_inspector_dropped",
        "sluice_api_inspector_watched_devices",
        "sluice_control_events",
        "sluice_limit_hits",
    },
    "actions": SHARED_CONSUMER,
    "parser": SHARED_CONSUMER,
    "storage": SHARED_CONSUMER,
    "gateway": {
        "sluice_gateway_connections",
        "sluice_gateway_messages_in",
        "sluice_gateway_messages_out",
        "sluice_gateway_auth_failures",
        "sluice_gateway_kafka_pending",
    },
}


def base_url(stack: Stack, name: str) -> str:
    return stack.processes[name].health_url.rsplit("/", 1)[0]


def scrape(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def sample_value(family: Any, **labels: str) -> float:
    return sum(
        s.value
        for s in family.samples
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created")
    )


def test_every_service_is_healthy_ready_and_scrapeable(sqlite_stack: Stack) -> None:
    account = sqlite_stack.create_account(f"obs-{uuid.uuid4().hex[:6]}")
    device = sqlite_stack.create_device(account["token"], name="observed", type="mutable")
    sqlite_stack.insert_action(account["token"], device["device_id"], "obs/#")
    client = Client(sqlite_stack.mqtt_port, device["token"], version=4)
    assert client.connect() == 0
    assert client.publish("obs/1", json.dumps({"variable": "seen", "value": 1}), qos=1) == 0
    client.disconnect()
    with sqlite_stack.client(device["token"]) as http:
        wait_for(
            lambda: http.get("/data", params={"variable": "seen"}).json()["result"],
            what="the message to go through every service",
        )

    exported: set[str] = set()
    for name in SERVICES:
        url = base_url(sqlite_stack, name)
        assert httpx.get(f"{url}/healthz").status_code == 200, name
        assert httpx.get(f"{url}/readyz").status_code == 200, name
        families = scrape(url)
        missing = EXPECTED[name] - set(families)
        assert not missing, f"{name} does not export {sorted(missing)}"
        exported |= {f.name for f in families.values() if f.name.startswith("sluice_")}

    # Operators find every metric in docs/operations.md.
    doc = OPERATIONS.read_text()
    undocumented = {
        n
        for n in exported
        if not n.endswith("_created") and f"`{n}`" not in doc and f"`{n}_total`" not in doc
    }
    assert not undocumented, f"add to docs/operations.md: {sorted(undocumented)}"

    consumed = scrape(base_url(sqlite_stack, "storage"))["sluice_records_consumed"]
    assert sample_value(consumed, service="storage", topic=f"{sqlite_stack.topic_prefix}data") > 0


def test_api_metrics_label_routes_not_paths(sqlite_stack: Stack) -> None:
    account = sqlite_stack.create_account(f"obs-{uuid.uuid4().hex[:6]}")
    device_id = sqlite_stack.create_device(account["token"], name="labelled")["device_id"]
    with sqlite_stack.client(account["token"]) as http:
        assert http.get(f"/device/{device_id}").status_code == 200
        assert http.get("/device/000000000000000000000000").status_code == 404
    with sqlite_stack.client("wrong-token") as http:
        assert http.get("/account/info").status_code == 401
    url = base_url(sqlite_stack, "api")
    families = scrape(url)
    requests = families["sluice_api_requests"]
    assert sample_value(requests, method="GET", route="/device/{device_id}", status="200") >= 1
    assert sample_value(requests, method="GET", route="/device/{device_id}", status="404") >= 1
    assert all(device_id not in str(s.labels) for s in requests.samples)
    latency = families["sluice_api_request_seconds"]
    assert sample_value(latency, route="/device/{device_id}") > 0
    failures = families["sluice_api_auth_failures"]
    assert sample_value(failures, kind="account", reason="invalid") >= 1
    controls = families["sluice_control_events"]
    assert sample_value(controls, service="api", type="device.changed") >= 1

    ready = httpx.get(f"{url}/readyz").json()
    assert ready == {"status": True, "result": "ready"}
    # Logs carry the ids of what changed.
    log = sqlite_stack.processes["api"].log_path.read_text()
    assert f"device created account={account['id']} device={device_id}" in log


def test_readyz_names_the_unreachable_database(sqlite_stack: Stack) -> None:
    port = free_port()
    broken = sqlite_stack.add(
        "api-no-db",
        SLUICE_API_PORT=str(port),
        SLUICE_DATABASE_URL=f"postgresql://sluice@127.0.0.1:{free_port()}/missing",
    )
    broken.start()
    try:
        url = f"http://127.0.0.1:{port}"

        def alive() -> bool:
            assert broken.alive(), sqlite_stack.tail(broken)
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(alive, timeout=90, what="the API to answer /healthz")
        response = httpx.get(f"{url}/readyz", timeout=10)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] is False
        assert body["message"].startswith("database: ")
        assert "kafka" not in body["message"]
        scrape(url)  # metrics still answer while not ready
    finally:
        sqlite_stack.processes.pop("api-no-db").stop()
