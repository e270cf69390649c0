"""The image, checked without a Docker engine.

The Dockerfile's structure (stages, cached dependency layer, non-root user, entrypoint)
is read from the file; its build stage is replayed on this machine (fixture
`image_root`), and the commands the compose file and the Kubernetes Jobs give the
entrypoint run from that replayed environment: `sluice migrate` on a fresh SQLite file and
a fresh PostgreSQL database, `sluice topics` on the session's Tansu broker, and
`sluice api` with the image's and the compose file's environment until /readyz answers.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sluice import records
from sluice.embedded import EmbeddedKafka, free_port
from sluice.testing.fixtures import postgres_admin_url

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TABLES = {"alembic_version", "accounts", "devices", "device_tokens", "data_points"}


def workspace_members() -> set[str]:
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    return {
        str(path.parent.relative_to(ROOT))
        for pattern in workspace["members"]
        for path in ROOT.glob(f"{pattern}/pyproject.toml")
    }


def test_dependency_layer_is_built_from_the_lock_and_manifests_only(
    dockerfile: list[Any], dockerfile_model: ModuleType
) -> None:
    build = next(s for s in dockerfile if s.name == "build")
    before_first_sync: list[str] = []
    for ins in build.instructions:
        if ins.keyword == "RUN" and "uv sync" in ins.args:
            assert "--frozen" in ins.args
            assert "--no-dev" in ins.args
            assert "--no-install-workspace" in ins.args
            break
        if ins.keyword == "COPY" and "from" not in dockerfile_model.copy_parts(ins.args)[0]:
            before_first_sync += dockerfile_model.copy_parts(ins.args)[1]
    # Nothing but manifests before the dependencies: a source change keeps that layer.
    assert set(before_first_sync) == {"pyproject.toml", "uv.lock"} | {
        f"{member}/pyproject.toml" for member in workspace_members()
    }


def test_runtime_stage_is_slim_non_root_with_the_sluice_entrypoint(dockerfile: list[Any]) -> None:
    default_base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert default_base is not None
    assert re.fullmatch(r"python:3\.11-slim-\w+", default_base.group(1))
    build, runtime = dockerfile[-2:]
    assert build.base == runtime.base == "${PYTHON_IMAGE}"
    keywords = {ins.keyword: ins.args for ins in runtime.instructions}
    assert keywords["USER"] == "10001:10001"
    assert json.loads(keywords["ENTRYPOINT"]) == ["sluice"]
    # The runtime stage takes the built environment, not the source or the build tools.
    copies = [ins.args for ins in runtime.instructions if ins.keyword == "COPY"]
    assert "--from=build /opt/sluice /opt/sluice" in copies
    assert not any("--from=uv" in c for c in copies)


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("uv.lock", True),
        ("libs/sluice/src/sluice/cli.py", True),
        ("services/api/src/sluice_api/migrations/env.py", True),
        ("deploy/healthcheck.py", True),
        (".env", False),
        (".venv/bin/python", False),
        ("services/api/tests/unit/test_x.py", False),
        ("libs/sluice/src/sluice/__pycache__/cli.cpython-311.pyc", False),
        ("deploy/k8s/base/kustomization.yaml", False),
        ("tests/e2e/test_first_message.py", False),
    ],
)
def test_build_context_holds_the_source_and_never_the_secrets(
    dockerignore: Any, path: str, sent: bool
) -> None:
    assert dockerignore.excluded(path) is not sent


def image_sluice(image_bin: Path) -> str:
    return str(image_bin / "sluice")


def run_image(
    image_bin: Path, image_env: dict[str, str], args: list[str], **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [image_sluice(image_bin), *args],
        env={**image_env, **env},
        cwd=image_bin.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_image_holds_sluice_as_wheels_without_dev_tools(
    image_bin: Path, image_env: dict[str, str]
) -> None:
    python = image_bin / "python"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u, sluice_api, sluice_gateway;"
            "print(sluice_api.__file__); print(u.find_spec('pytest') is None)",
        ],
        env=image_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    location, no_pytest = probe.stdout.split()
    assert location.startswith(str(image_bin.parent)), location  # not an editable install
    assert no_pytest == "True"
    assert run_image(image_bin, image_env, ["--help"]).returncode == 0


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}


def test_migrate_creates_the_schema_on_a_fresh_sqlite_file_and_reruns(
    image_bin: Path, image_env: dict[str, str], tmp_path: Path
) -> None:
    db = tmp_path / "fresh.db"
    for _ in range(2):  # a re-run Job must succeed and change nothing
        result = run_image(image_bin, image_env, ["migrate"], SLUICE_DATABASE_URL=f"sqlite:///{db}")
        assert result.returncode == 0, result.stderr
    assert sqlite_tables(db) >= TABLES
    # SLUICE_LOG_FORMAT=json from the image: one JSON object per line for log collectors.
    lines = [line for line in result.stderr.splitlines() + result.stdout.splitlines() if line]
    assert lines
    assert all(isinstance(json.loads(line), dict) for line in lines)


async def _pg(admin: str, sql: str, database: str | None = None) -> list[Any]:
    import asyncpg

    url = admin.replace("postgresql+asyncpg://", "postgresql://")
    if database:
        url = url.rsplit("/", 1)[0] + "/" + database
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@pytest.mark.postgres
def test_migrate_creates_the_schema_on_a_fresh_postgresql_database(
    image_bin: Path, image_env: dict[str, str]
) -> None:
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL is not reachable (set SLUICE_TEST_DATABASE_URL to use one)")
    name = f"sluice_deploy_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(admin, f'CREATE DATABASE "{name}"'))
    try:
        # The URL form an operator writes (postgresql://), as in docker-compose.yml.
        url = admin.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0]
        result = run_image(image_bin, image_env, ["migrate"], SLUICE_DATABASE_URL=f"{url}/{name}")
        assert result.returncode == 0, result.stderr
        rows = asyncio.run(
            _pg(admin, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", name)
        )
        assert {row["tablename"] for row in rows} >= TABLES
    finally:
        asyncio.run(_pg(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _describe(bootstrap: str, prefix: str) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        described = await admin.describe_topics(names)
        return {d["topic"][len(prefix) :]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


def test_topics_creates_every_topic_on_the_broker_and_reruns(
    image_bin: Path, image_env: dict[str, str], kafka: EmbeddedKafka
) -> None:
    prefix = f"deploy{uuid.uuid4().hex[:8]}."
    env = {
        "SLUICE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SLUICE_TOPIC_PREFIX": prefix,
        "SLUICE_TOPIC_PARTITIONS": "3",
    }
    for _ in range(2):
        result = run_image(image_bin, image_env, ["topics"], **env)
        assert result.returncode == 0, result.stderr
    partitions = asyncio.run(_describe(kafka.bootstrap, prefix))
    assert partitions == {
        name: 1 if name in records.SINGLE_PARTITION_TOPICS else 3 for name in records.ALL_TOPICS
    }


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def api_process(
    image_bin: Path,
    image_env: dict[str, str],
    compose_config: dict[str, Any],
    kafka: EmbeddedKafka,
    tmp_path: Path,
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:
    db = tmp_path / "api.db"
    port = free_port()
    prefix = f"deployapi{uuid.uuid4().hex[:6]}."
    service_env = compose_config["services"]["api"]["environment"]
    # Only the network addresses of the compose project change (services → this machine);
    # idempotence is off because Tansu refuses it (ARCHITECTURE.md), and the port is free.
    overrides = {
        "SLUICE_DATABASE_URL": f"sqlite:///{db}",
        "SLUICE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SLUICE_KAFKA_IDEMPOTENCE": "false",
        "SLUICE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "SLUICE_TOPIC_PREFIX": prefix,
        "SLUICE_API_PORT": str(port),
    }
    assert set(overrides) - {"SLUICE_API_PORT"} <= set(service_env)
    env = {**image_env, **service_env, **overrides}
    for command in (["migrate"], ["topics"]):
        result = run_image(image_bin, env, command)
        assert result.returncode == 0, result.stderr
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [image_sluice(image_bin), *compose_config["services"]["api"]["command"]],
            env=env,
            cwd=image_bin.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, env, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_api_started_like_the_compose_service_becomes_ready(
    api_process: tuple[subprocess.Popen[bytes], dict[str, str], Path],
) -> None:
    process, env, log = api_process
    # Run as the image installs it: executable, its shebang finding the image's python3.
    healthcheck = [str(ROOT / "deploy" / "healthcheck.py")]
    assert "SLUICE_HEALTH_PORT" not in env  # the API answers on SLUICE_API_PORT
    url = f"http://127.0.0.1:{env['SLUICE_API_PORT']}"
    deadline = time.monotonic() + 45
    while http_status(f"{url}/readyz") != 200:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"not ready after 45 s:\n{log.read_text()}"
        time.sleep(0.2)
    assert http_status(f"{url}/healthz") == 200
    # The compose health check: the same script the image installs as sluice-healthcheck.
    probe = subprocess.run(healthcheck, env=env, capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    # docker stop / a pod's termination: SIGTERM shuts it down gracefully (uvicorn then
    # re-raises the signal, so the exit status may say SIGTERM).
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()


class _Status(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"kafka: not connected\n" if self.status != 200 else b"ready\n")

    def log_message(self, *args: Any) -> None:
        pass


def test_healthcheck_probes_the_port_of_the_service_it_runs_beside(
    healthcheck: ModuleType,
) -> None:
    both = {"SLUICE_HEALTH_PORT": "9000", "SLUICE_API_PORT": "8001"}
    assert healthcheck.probe_url(both) == "http://127.0.0.1:9000/readyz"
    assert healthcheck.probe_url({"SLUICE_API_PORT": "8001"}, "/healthz").endswith(":8001/healthz")
    assert healthcheck.probe_url({}) == "http://127.0.0.1:8000/readyz"


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1)])
def test_healthcheck_script_exit_status_follows_readyz(status: int, code: int) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), type("H", (_Status,), {"status": status}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "healthcheck.py")],
            env={"PATH": "/usr/bin:/bin", "SLUICE_HEALTH_PORT": str(server.server_port)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        server.shutdown()
    assert result.returncode == code
    if code:
        assert "503 kafka: not connected" in result.stderr
