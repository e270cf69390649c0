"""Fixtures for the deploy checks: the deploy/ scripts as modules, the image replayed.

`image_root` replays the Dockerfile's build stage on this machine (the same `uv sync`
commands on the same files the COPY lines bring, honouring .dockerignore), so the
entrypoint tests run the `sluice` the image would hold: Sluice's packages as wheels and
no development dependencies.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


model = _load(Path(__file__).with_name("dockerfile_model.py"), "sluice_deploy_dockerfile_model")


@pytest.fixture(scope="session")
def render_k8s() -> ModuleType:
    return _load(DEPLOY / "render_k8s.py", "render_k8s")


@pytest.fixture(scope="session")
def validate() -> ModuleType:
    return _load(DEPLOY / "validate.py", "sluice_deploy_validate")


@pytest.fixture(scope="session")
def healthcheck() -> ModuleType:
    return _load(DEPLOY / "healthcheck.py", "sluice_deploy_healthcheck")


@pytest.fixture(scope="session")
def dockerfile() -> Any:
    return model.parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="session")
def dockerignore() -> Any:
    return model.DockerIgnore((ROOT / ".dockerignore").read_text())


def find_uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv is needed to replay the image build; run `make install`")
    return found


def build_stage(stages: list[Any]) -> Any:
    return next(s for s in stages if s.name == "build")


@pytest.fixture(scope="session")
def image_root(
    dockerfile: list[Any], dockerignore: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A directory standing for the image's filesystem after the build stage."""
    root = tmp_path_factory.mktemp("image")
    stage = build_stage(dockerfile)
    # This machine's network settings (CA bundle, proxy, index) stay; nothing that would
    # point uv at another environment does.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"}
    }
    for key, value in stage.env().items():
        env[key] = str(root) + value if value.startswith("/") else value
    # The image's base has Python at /usr/local/bin; here it is this interpreter's base.
    env["UV_PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    env["UV_COMPILE_BYTECODE"] = "0"  # saves time here; byte-compiling changes nothing else
    workdir = root
    for ins in stage.instructions:
        if ins.keyword == "WORKDIR":
            workdir = root / ins.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            flags, sources, dest = model.copy_parts(ins.args)
            if "from" in flags:
                continue  # the uv binary: here it is the one `make install` fetched
            target = workdir / dest if not dest.startswith("/") else root / dest.lstrip("/")
            for source in sources:
                model.copy_from_context(ROOT, dockerignore, source, target)
        elif ins.keyword == "RUN":
            command = [t for t in shlex.split(ins.args) if not t.startswith("--mount=")]
            assert command[0] == "uv", f"the replay knows only `uv` steps, not: RUN {ins.args}"
            result = subprocess.run(
                [find_uv(), *command[1:]],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, f"RUN {ins.args}\n{result.stderr}"
        elif ins.keyword != "ENV":
            pytest.fail(f"the build-stage replay does not know {ins.keyword}: update it")
    return root


@pytest.fixture(scope="session")
def image_bin(image_root: Path, dockerfile: list[Any]) -> Path:
    """The directory the image puts first on PATH (where `sluice` is)."""
    runtime = dockerfile[-1]
    path = runtime.env()["PATH"].split(":")[0]
    return image_root / path.lstrip("/")


@pytest.fixture(scope="session")
def image_env(dockerfile: list[Any], image_bin: Path) -> dict[str, str]:
    """The runtime stage's ENV, with PATH leading to the replayed environment."""
    env = dict(dockerfile[-1].env())
    env["PATH"] = f"{image_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = os.environ.get("HOME", "/tmp")
    return env


@pytest.fixture(scope="session")
def compose_config(validate: ModuleType) -> dict[str, Any]:
    """docker-compose.yml as Docker Compose resolves it with .env.example."""
    result = subprocess.run(
        [
            str(validate.compose_binary()),
            "--project-directory",
            str(ROOT),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--env-file",
            str(ROOT / ".env.example"),
            "config",
            "--format",
            "json",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="session")
def dockerfile_model() -> ModuleType:
    return model
