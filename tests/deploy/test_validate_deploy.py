"""The offline deploy checks pass on the repository and fail on broken copies of it.

Each broken copy changes one thing a person could plausibly get wrong; the check must
name it. The tools are the real ones: Docker Compose v2's binary, hadolint,
kubernetes-validate --strict.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_repository_passes_every_check() -> None:
    """What `make validate-deploy` runs: one line per check, exit status 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "validate.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "ok   docker-compose.yml (docker compose config)",
        "ok   Dockerfile (hadolint)",
    ]
    assert [line.split(" (")[0] for line in lines[2:]] == [
        "ok   k8s overlay dev",
        "ok   k8s overlay prod",
    ]


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "deploy" / "k8s", tmp_path / "k8s")
    return tmp_path / "k8s"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        # A misspelt field: only strict validation notices.
        (
            "base/gateway.yaml",
            "  replicas: 2\n",
            "  replica: 2\n",
            r"deployment/sluice-gateway.*'replica' was unexpected",
        ),
        # A wrong type.
        (
            "base/api.yaml",
            "containerPort: 8000",
            "containerPort: http",
            r"deployment/sluice-api.*'http' is not of type 'integer'",
        ),
        # A patch in an overlay that breaks the rendered object.
        (
            "overlays/prod/hpa-parser.yaml",
            "minReplicas: 2",
            "minReplicas: two",
            r"prod: .*horizontalpodautoscaler/sluice-parser",
        ),
        # Sluice's own rules, which the schemas allow.
        (
            "base/storage.yaml",
            "          readinessProbe:\n",
            "          startupProbe:\n",
            r"Deployment sluice-storage container storage: needs a readinessProbe",
        ),
        (
            "base/actions.yaml",
            "      enableServiceLinks: false\n",
            "",
            r"Deployment sluice-actions: set enableServiceLinks: false",
        ),
        # The kustomization itself.
        (
            "base/kustomization.yaml",
            "  - jobs.yaml\n",
            "  - job.yaml\n",
            r"resource 'job.yaml' does not exist",
        ),
    ],
    ids=["unknown-field", "wrong-type", "overlay-patch", "no-readiness", "service-links", "typo"],
)
def test_a_broken_manifest_fails_validation(
    validate: ModuleType, k8s_copy: Path, file: str, old: str, new: str, expected: str
) -> None:
    edit(k8s_copy / file, old, new)
    # The prod overlay renders every base file; one overlay keeps the test quick.
    problems = validate.check_overlay(k8s_copy / "overlays" / "prod")
    assert any(re.search(expected, p) for p in problems), problems


@pytest.fixture
def compose_copy(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    return tmp_path / "docker-compose.yml", tmp_path / ".env.example"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # Compose's own schema: an unknown dependency condition.
        (
            "      condition: service_completed_successfully\n  healthcheck:",
            "      condition: service_completed\n  healthcheck:",
            r"service_completed",
        ),
        # A dependency on a service that does not exist.
        (
            "    redis:\n      condition: service_healthy\n",
            "    cache:\n      condition: service_healthy\n",
            r"cache",
        ),
        # Sluice's rules on the resolved model: the parser without a health check.
        (
            '  parser:\n    <<: *sluice\n    command: ["parser"]\n',
            '  parser:\n    <<: *sluice\n    command: ["parser"]\n'
            "    healthcheck:\n      disable: true\n",
            r"compose: parser has no health check",
        ),
        (
            "    kafka:\n      condition: service_healthy\n    postgres:",
            "    kafka:\n      condition: service_started\n    postgres:",
            r"compose: gateway must wait for kafka to be healthy",
        ),
    ],
    ids=["bad-condition", "unknown-dependency", "no-healthcheck", "not-healthy"],
)
def test_a_broken_compose_file_fails_validation(
    validate: ModuleType, compose_copy: tuple[Path, Path], old: str, new: str, expected: str
) -> None:
    compose_file, env_file = compose_copy
    edit(compose_file, old, new)
    problems = validate.check_compose(compose_file, env_file)
    assert any(re.search(expected, p) for p in problems), problems


def test_compose_refuses_to_start_without_the_secrets(
    validate: ModuleType, compose_copy: tuple[Path, Path]
) -> None:
    compose_file, env_file = compose_copy
    edit(env_file, "POSTGRES_PASSWORD=change-me\n", "")
    problems = validate.check_compose(compose_file, env_file)
    assert any("set POSTGRES_PASSWORD in .env" in p for p in problems), problems


def test_a_dockerfile_that_runs_as_root_fails_the_lint(
    validate: ModuleType, tmp_path: Path
) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace("USER 10001:10001", "USER root"))
    problems = validate.check_dockerfile(broken)
    assert any("DL3002" in p for p in problems), problems


def test_env_example_declares_every_variable_the_compose_file_requires() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", compose))
    declared = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required == {"POSTGRES_PASSWORD", "SLUICE_ADMIN_TOKEN"}
    assert required <= declared
    # Kafka and database addresses stay in the compose file: `make run` reads .env too.
    assert not declared & {"SLUICE_KAFKA_BOOTSTRAP", "SLUICE_DATABASE_URL"}


def test_compose_kafka_is_configured_for_production(compose_config: dict) -> None:
    services = compose_config["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    assert any(v["target"] == env["KAFKA_LOG_DIRS"] for v in kafka["volumes"])
    assert any(v["target"] == "/var/lib/postgresql/data" for v in services["postgres"]["volumes"])
    for name in ("gateway", "actions", "parser", "storage", "api", "migrate", "topics"):
        assert services[name]["environment"]["SLUICE_KAFKA_IDEMPOTENCE"] == "true"
    published = {(p["target"], p["published"]) for p in services["gateway"]["ports"]} | {
        (p["target"], p["published"]) for p in services["api"]["ports"]
    }
    assert published == {(1883, "1883"), (8883, "8883"), (8083, "8083"), (8000, "8000")}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_has_the_shape_the_issue_asks_for(render_k8s: ModuleType, overlay: str) -> None:
    docs = render_k8s.render(ROOT / "deploy" / "k8s" / "overlays" / overlay)
    found = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    gateway_lb = found[("Service", "sluice-gateway")]["spec"]
    assert gateway_lb["type"] == "LoadBalancer"
    assert {p["port"] for p in gateway_lb["ports"]} == {1883, 8883}
    assert ("Ingress", "sluice") in found
    assert ("Service", "sluice-api") in found
    jobs = {
        d["spec"]["template"]["spec"]["containers"][0]["args"][0]
        for d in docs
        if d["kind"] == "Job"
    }
    assert jobs == {"migrate", "topics"}
    [config] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("sluice-config-")
    ]
    partitions = int(config["data"]["SLUICE_TOPIC_PARTITIONS"])
    autoscaled = set()
    for (kind, name), doc in found.items():
        if kind == "HorizontalPodAutoscaler":
            # More consumers than partitions would sit idle.
            assert doc["spec"]["maxReplicas"] <= partitions, name
            autoscaled.add(doc["spec"]["scaleTargetRef"]["name"])
    assert autoscaled == {"sluice-actions", "sluice-parser", "sluice-storage"}
    for (kind, name), doc in found.items():
        if kind == "Deployment" and name.startswith("sluice-"):
            assert ("PodDisruptionBudget", name) in found
            # The HPA owns the count of the consumers: a fixed one would fight it.
            assert ("replicas" in doc["spec"]) == (name not in autoscaled), name
            [container] = doc["spec"]["template"]["spec"]["containers"]
            node_id = next(e for e in container["env"] if e["name"] == "SLUICE_NODE_ID")
            assert node_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
