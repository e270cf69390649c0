"""deploy/render_k8s.py renders what `kubectl kustomize` renders, for the features we use.

Expected names and orders below were read from kubectl's Kustomize v5.5; when kubectl is
installed the last tests compare the two renderers directly on every scenario and on the
real overlays.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: sluice
        envFrom: [{configMapRef: {name: cfg}}, {secretRef: {name: sec}}]
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: sec, key: T}}
      - name: sidecar
        image: localhost:5000/sluice-tools:2
      volumes:
      - {name: conf, configMap: {name: cfg}}
      - {name: other, configMap: {name: not-generated}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: "sluice:old"}]
"""

SCENARIOS: dict[str, dict[str, str]] = {
    "one-literal": {
        "kustomization.yaml": "configMapGenerator: [{name: cfg, literals: [A=1]}]\n",
    },
    "html-characters": {
        "kustomization.yaml": "configMapGenerator: [{name: cfg, literals: ['A=1', 'B=x<y']}]\n",
    },
    "overlay": {
        "base/kustomization.yaml": """
            labels:
            - pairs: {app.kubernetes.io/part-of: sluice}
              includeTemplates: true
            resources: [app.yaml]
            configMapGenerator:
            - name: cfg
              literals: [A=1, B=x<y]
        """,
        "base/app.yaml": DEPLOYMENT,
        "overlay/kustomization.yaml": """
            namespace: sluice-dev
            resources: [../base, ns.yaml]
            images: [{name: sluice, newName: reg.example/sluice, newTag: "1.0"}]
            configMapGenerator:
            - name: cfg
              behavior: merge
              literals: [B=2]
            secretGenerator:
            - name: sec
              literals: [T=abc]
        """,
        "overlay/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: sluice-dev}\n",
    },
    "strategic-merge": {
        "kustomization.yaml": """
            resources: [dep.yaml]
            patches:
            - path: patch.yaml
        """,
        "dep.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: x}
            spec:
              replicas: 1
              selector: {matchLabels: {a: b}}
              template:
                metadata: {labels: {a: b}}
                spec:
                  containers:
                  - name: one
                    image: i1
                    args: [a, b]
                    env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: C, value: "3"}]
                    ports: [{containerPort: 1, name: p1}, {containerPort: 2, name: p2}]
                  - name: two
                    image: i2
                  volumes:
                  - {name: a, emptyDir: {}}
                  - {name: b, emptyDir: {}}
                  - {name: c, emptyDir: {}}
        """,
        "patch.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: x}
            spec:
              replicas: null
              template:
                spec:
                  containers:
                  - name: two
                    image: i2b
                  - name: three
                    image: i3
                  - name: one
                    args: [c]
                    env: [{name: B, value: "20"}, {name: D, value: "4"}]
                    ports: [{containerPort: 2, name: p2b}]
                  volumes: [{name: b, emptyDir: {medium: Memory}}, {name: d, emptyDir: {}}]
        """,
    },
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def scenario(tmp_path: Path, name: str) -> Path:
    root = write_tree(tmp_path / name, SCENARIOS[name])
    return root / "overlay" if name == "overlay" else root


def by_id(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("one-literal", "cfg-89g4tffbfk"), ("html-characters", "cfg-k844b24m29")],
)
def test_generated_configmap_gets_kustomizes_hash_suffix(
    render_k8s: ModuleType, tmp_path: Path, name: str, expected: str
) -> None:
    [config_map] = render_k8s.render(scenario(tmp_path, name))
    assert config_map["metadata"]["name"] == expected


def test_overlay_merges_generators_renames_references_and_sets_namespace_images_labels(
    render_k8s: ModuleType, tmp_path: Path
) -> None:
    docs = render_k8s.render(scenario(tmp_path, "overlay"))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("Namespace", "sluice-dev"),
        ("ConfigMap", "cfg-66h9cbh964"),
        ("Secret", "sec-698g6h29bm"),
        ("Deployment", "api"),
        ("Job", "migrate"),
    ]
    found = by_id(docs)
    assert "namespace" not in found[("Namespace", "sluice-dev")]["metadata"]
    assert found[("ConfigMap", "cfg-66h9cbh964")]["data"] == {"A": "1", "B": "2"}
    assert found[("Secret", "sec-698g6h29bm")]["data"] == {"T": "YWJj"}
    deployment = found[("Deployment", "api")]
    assert deployment["metadata"]["namespace"] == "sluice-dev"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"] == {"app": "api", "app.kubernetes.io/part-of": "sluice"}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "api"}}
    api, sidecar = pod["spec"]["containers"]
    assert api["image"] == "reg.example/sluice:1.0"
    assert sidecar["image"] == "localhost:5000/sluice-tools:2"
    assert api["envFrom"] == [
        {"configMapRef": {"name": "cfg-66h9cbh964"}},
        {"secretRef": {"name": "sec-698g6h29bm"}},
    ]
    assert api["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "sec-698g6h29bm"
    assert [v["configMap"]["name"] for v in pod["spec"]["volumes"]] == [
        "cfg-66h9cbh964",
        "not-generated",
    ]
    job = found[("Job", "migrate")]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example/sluice:1.0"
    assert job["spec"]["template"]["metadata"]["labels"] == {"app.kubernetes.io/part-of": "sluice"}


def test_strategic_merge_patch_merges_keyed_lists_in_kustomizes_order(
    render_k8s: ModuleType, tmp_path: Path
) -> None:
    [deployment] = render_k8s.render(scenario(tmp_path, "strategic-merge"))
    assert "replicas" not in deployment["spec"]
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["two", "three", "one"]
    one = pod["containers"][2]
    assert one["image"] == "i1"
    assert one["args"] == ["c"]
    assert [(e["name"], e["value"]) for e in one["env"]] == [
        ("B", "20"),
        ("D", "4"),
        ("A", "1"),
        ("C", "3"),
    ]
    assert one["ports"] == [{"containerPort": 2, "name": "p2b"}, {"containerPort": 1, "name": "p1"}]
    assert [v["name"] for v in pod["volumes"]] == ["b", "d", "a", "c"]
    assert pod["volumes"][0]["emptyDir"] == {"medium": "Memory"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"kustomization.yaml": "commonLabels: {a: b}\n"}, "unsupported field(s) commonLabels"),
        ({"kustomization.yaml": "resources: [missing.yaml]\n"}, "'missing.yaml' does not exist"),
        (
            {
                "kustomization.yaml": "resources: [dep.yaml]\npatches: [{path: p.yaml}]\n",
                "dep.yaml": SCENARIOS["strategic-merge"]["dep.yaml"],
                "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nope}\n",
            },
            "no Deployment named nope to patch",
        ),
        (
            {
                "kustomization.yaml": (
                    "resources: [dep.yaml]\npatches: [{path: p.yaml, target: {kind: Deployment}}]\n"
                ),
                "dep.yaml": SCENARIOS["strategic-merge"]["dep.yaml"],
                "p.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
            },
            "patch field(s) target unsupported",
        ),
        (
            {
                "kustomization.yaml": (
                    "configMapGenerator: [{name: c, literals: [A=1]}, {name: c, literals: [B=1]}]\n"
                )
            },
            "ConfigMap c exists already",
        ),
    ],
    ids=["unknown-field", "missing-resource", "patch-without-target", "patch-target", "twice"],
)
def test_what_the_renderer_cannot_do_is_an_error(
    render_k8s: ModuleType, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(
        render_k8s.KustomizeError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        render_k8s.render(write_tree(tmp_path, files))


def test_cli_writes_the_rendered_overlay(render_k8s: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "prod.yaml"
    assert render_k8s.main([str(K8S / "overlays" / "prod"), "-o", str(out)]) == 0
    docs = list(yaml.safe_load_all(out.read_text()))
    assert docs == render_k8s.render(K8S / "overlays" / "prod")
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"sluice"}


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: no reference renderer")
@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod", *SCENARIOS])
def test_same_objects_in_the_same_order_as_kubectl_kustomize(
    render_k8s: ModuleType, tmp_path: Path, target: str
) -> None:
    directory = scenario(tmp_path, target) if target in SCENARIOS else K8S / target
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert render_k8s.render(directory) == list(yaml.safe_load_all(result.stdout))
