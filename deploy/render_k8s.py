#!/usr/bin/env python3
"""Render a Kustomize directory in pure Python: the subset of Kustomize v5 Sluice uses.

CI runs on a machine with Python and make only, and the kustomize binary is not on PyPI.
This renderer gives the same objects as ``kubectl kustomize`` for these features (the
tests compare the two whenever kubectl is installed):

- ``resources``: YAML files and directories holding a kustomization
- ``namespace``; ``labels`` (``pairs``, ``includeTemplates``)
- ``configMapGenerator`` / ``secretGenerator`` with ``literals`` and ``behavior``
  (create, merge, replace); names get Kustomize's content-hash suffix and references to
  them in pod specs follow
- ``images`` (``newName``, ``newTag``, ``digest``)
- ``patches``: strategic-merge patches given by ``path`` or inline ``patch``

Anything else in a kustomization is an error, never silently ignored.

    python deploy/render_k8s.py deploy/k8s/overlays/prod > prod.yaml
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "images",
        "configMapGenerator",
        "secretGenerator",
        "patches",
    }
)
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "PriorityClass",
        "StorageClass",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "APIService",
    }
)
# Kinds whose spec.template is a pod template (labels with includeTemplates reach it).
POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})

# Kustomize's "legacy" output order: these kinds first, in this order, the rest after them.
ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")

# Strategic merge: lists merged item by item on this key (Kubernetes' patchMergeKey for
# the fields Sluice patches); every other list is replaced by the patch's.
MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),  # container ports, then Service ports
}


class KustomizeError(Exception):
    """A kustomization this renderer cannot build, with the file and the reason."""


@dataclass
class Resource:
    doc: Doc
    generated: bool = False  # a generator made it: gets the hash suffix at the end

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.doc.get("metadata", {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        return self.doc.get("metadata", {}).get("namespace")


def render(directory: Path) -> list[Doc]:
    """The objects ``kustomize build directory`` outputs, in its order."""
    resources = _build(directory.resolve(), stack=())
    _apply_name_hashes(resources)
    return sorted((r.doc for r in resources), key=_order_key)


def dump(docs: list[Doc]) -> str:
    return "---\n".join(
        yaml.safe_dump(doc, sort_keys=True, default_flow_style=False) for doc in docs
    )


def _load_kustomization(directory: Path) -> tuple[Path, Doc]:
    for name in KUSTOMIZATION_FILES:
        path = directory / name
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            if not isinstance(data, dict):
                raise KustomizeError(f"{path}: not a mapping")
            unknown = sorted(set(data) - SUPPORTED_FIELDS)
            if unknown:
                raise KustomizeError(
                    f"{path}: unsupported field(s) {', '.join(unknown)}; "
                    f"deploy/render_k8s.py handles {', '.join(sorted(SUPPORTED_FIELDS))}"
                )
            return path, data
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _load_documents(path: Path) -> list[Doc]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: invalid YAML: {exc}") from exc
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise KustomizeError(f"{path}: every document needs kind and metadata")
    return docs


def _build(directory: Path, stack: tuple[Path, ...]) -> list[Resource]:
    if directory in stack:
        raise KustomizeError(f"{directory}: cycle in resources")
    path, kustomization = _load_kustomization(directory)
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources += _build(target, (*stack, directory))
        elif target.is_file():
            resources += [Resource(doc) for doc in _load_documents(target)]
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")
    _check_unique(resources, path)
    for spec in kustomization.get("configMapGenerator", []):
        _generate(resources, spec, "ConfigMap", path)
    for spec in kustomization.get("secretGenerator", []):
        _generate(resources, spec, "Secret", path)
    # Kustomize's transformer order: patches, namespace, labels, images.
    for patch in kustomization.get("patches", []):
        _apply_patch(resources, patch, directory, path)
    if "namespace" in kustomization:
        for resource in resources:
            if resource.kind not in CLUSTER_SCOPED:
                resource.doc["metadata"]["namespace"] = kustomization["namespace"]
    for entry in kustomization.get("labels", []):
        _apply_labels(resources, entry, path)
    for image in kustomization.get("images", []):
        _apply_image(resources, image)
    return resources


def _check_unique(resources: list[Resource], path: Path) -> None:
    seen: set[tuple[str, str | None, str]] = set()
    for r in resources:
        key = (r.kind, r.namespace, r.name)
        if key in seen:
            raise KustomizeError(f"{path}: {r.kind} {r.name} is defined twice")
        seen.add(key)


def _parse_literals(spec: Doc, path: Path) -> dict[str, str]:
    unknown = sorted(set(spec) - {"name", "literals", "behavior", "type"})
    if unknown:
        raise KustomizeError(f"{path}: generator field(s) {', '.join(unknown)} unsupported")
    data: dict[str, str] = {}
    for literal in spec.get("literals", []):
        key, sep, value = str(literal).partition("=")
        if not sep or not key:
            raise KustomizeError(f"{path}: literal {literal!r} is not KEY=VALUE")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        data[key] = value
    return data


def _generate(resources: list[Resource], spec: Doc, kind: str, path: Path) -> None:
    name = spec.get("name")
    if not name:
        raise KustomizeError(f"{path}: a {kind} generator needs a name")
    literals = _parse_literals(spec, path)
    if kind == "Secret":
        data = {k: base64.b64encode(v.encode()).decode() for k, v in literals.items()}
    else:
        data = literals
    behavior = spec.get("behavior", "create")
    existing = [r for r in resources if r.kind == kind and r.name == name]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"{path}: {kind} {name} exists already; use behavior: merge")
        doc: Doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "data": data}
        if kind == "Secret":
            doc["type"] = spec.get("type", "Opaque")
        resources.append(Resource(doc, generated=True))
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise KustomizeError(f"{path}: behavior {behavior} needs one {kind} {name} to act on")
        target = existing[0].doc
        target["data"] = {**target.get("data", {}), **data} if behavior == "merge" else data
    else:
        raise KustomizeError(f"{path}: unknown generator behavior {behavior!r}")


def _apply_patch(resources: list[Resource], entry: Doc, directory: Path, path: Path) -> None:
    unknown = sorted(set(entry) - {"path", "patch"})
    if unknown:
        raise KustomizeError(
            f"{path}: patch field(s) {', '.join(unknown)} unsupported "
            "(only strategic-merge patches by path or inline patch)"
        )
    if "path" in entry:
        source = directory / entry["path"]
        if not source.is_file():
            raise KustomizeError(f"{path}: patch {entry['path']!r} does not exist")
        text, where = source.read_text(), str(source)
    else:
        text, where = str(entry.get("patch", "")), f"{path} (inline patch)"
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise KustomizeError(f"{where}: a patch holds exactly one object")
    patch = docs[0]
    kind = patch.get("kind")
    name = patch.get("metadata", {}).get("name")
    namespace = patch.get("metadata", {}).get("namespace")
    targets = [
        r
        for r in resources
        if r.kind == kind and r.name == name and namespace in (None, r.namespace)
    ]
    if not targets:
        raise KustomizeError(f"{where}: no {kind} named {name} to patch")
    for target in targets:
        target.doc = strategic_merge(target.doc, patch, where)


def strategic_merge(base: Any, patch: Any, where: str = "patch", field: str = "") -> Any:
    """Kubernetes strategic merge as kustomize applies it, for maps and keyed lists."""
    if isinstance(patch, dict):
        if not isinstance(base, dict):
            base = {}
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if key.startswith("$"):
                raise KustomizeError(f"{where}: directive {key} is unsupported")
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(merged.get(key), value, where, key)
        return merged
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        merge_key = _merge_key(field, patch, where)
        if merge_key is not None:
            return _merge_keyed_list(base, patch, merge_key, where)
    return copy.deepcopy(patch)


def _merge_key(field: str, patch: list[Any], where: str) -> str | None:
    for candidate in MERGE_KEYS[field]:
        if patch and all(isinstance(item, dict) and candidate in item for item in patch):
            return candidate
    if patch:
        raise KustomizeError(f"{where}: items of {field} need a merge key {MERGE_KEYS[field]}")
    return None


def _merge_keyed_list(base: list[Any], patch: list[Any], key: str, where: str) -> list[Any]:
    # kustomize's order: the patch's items (merged into their match), then the rest.
    by_key = {item.get(key): item for item in base if isinstance(item, dict)}
    merged = [strategic_merge(by_key.get(item[key], {}), item, where) for item in patch]
    patched = {item[key] for item in patch}
    return merged + [
        copy.deepcopy(item)
        for item in base
        if not (isinstance(item, dict) and item.get(key) in patched)
    ]


def _apply_labels(resources: list[Resource], entry: Doc, path: Path) -> None:
    unknown = sorted(set(entry) - {"pairs", "includeTemplates", "includeSelectors"})
    if unknown or entry.get("includeSelectors"):
        raise KustomizeError(
            f"{path}: labels support pairs and includeTemplates only "
            "(selectors are immutable: set them in the resources)"
        )
    pairs = {str(k): str(v) for k, v in (entry.get("pairs") or {}).items()}
    for resource in resources:
        metadata = resource.doc.setdefault("metadata", {})
        metadata["labels"] = {**(metadata.get("labels") or {}), **pairs}
        if entry.get("includeTemplates") and resource.kind in POD_TEMPLATE_KINDS:
            template = resource.doc.setdefault("spec", {}).setdefault("template", {})
            tmeta = template.setdefault("metadata", {})
            tmeta["labels"] = {**(tmeta.get("labels") or {}), **pairs}


def _pod_specs(doc: Doc) -> Iterator[Doc]:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        yield spec
    elif doc.get("kind") == "CronJob":
        yield from _pod_specs({"kind": "Job", "spec": spec.get("jobTemplate", {}).get("spec")})
    elif isinstance(spec.get("template"), dict) and "spec" in spec["template"]:
        yield spec["template"]["spec"]


def _containers(pod_spec: Doc) -> Iterator[Doc]:
    for field in ("initContainers", "containers"):
        yield from pod_spec.get(field) or []


def _split_image(image: str) -> str:
    """The image's name without tag or digest (a registry port is part of the name)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _apply_image(resources: list[Resource], entry: Doc) -> None:
    match = entry["name"]
    for resource in resources:
        for pod_spec in _pod_specs(resource.doc):
            for container in _containers(pod_spec):
                image = container.get("image", "")
                if _split_image(image) != match:
                    continue
                rest = image[len(match) :]
                name = entry.get("newName", match)
                if "digest" in entry:
                    container["image"] = f"{name}@{entry['digest']}"
                elif "newTag" in entry:
                    container["image"] = f"{name}:{entry['newTag']}"
                else:
                    container["image"] = name + rest


def _go_json(value: Any) -> str:
    """json.Marshal's bytes for maps of strings: sorted keys, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def content_hash(doc: Doc) -> str:
    """Kustomize's name suffix for a generated ConfigMap or Secret.

    Kustomize v5 hashes kind, data (and type for a Secret) with an empty name: its
    lookup of ``metadata/name`` finds nothing.
    """
    encoded: Doc = {"kind": doc["kind"], "name": "", "data": doc.get("data") or ""}
    if doc["kind"] == "Secret":
        encoded["type"] = doc.get("type", "")
    digest = hashlib.sha256(_go_json(encoded).encode()).hexdigest()
    return digest[:10].translate(str.maketrans("013ae", "ghkmt"))


def _apply_name_hashes(resources: list[Resource]) -> None:
    renamed: dict[tuple[str, str | None, str], str] = {}
    for resource in resources:
        if resource.generated:
            new_name = f"{resource.name}-{content_hash(resource.doc)}"
            renamed[(resource.kind, resource.namespace, resource.name)] = new_name
            resource.doc["metadata"]["name"] = new_name
    if not renamed:
        return
    for resource in resources:
        namespace = resource.namespace

        def ref(kind: str, obj: Doc | None, field: str, namespace: str | None = namespace) -> None:
            if obj and (kind, namespace, obj.get(field)) in renamed:
                obj[field] = renamed[(kind, namespace, obj[field])]

        for pod_spec in _pod_specs(resource.doc):
            for secret in pod_spec.get("imagePullSecrets") or []:
                ref("Secret", secret, "name")
            for volume in pod_spec.get("volumes") or []:
                ref("ConfigMap", volume.get("configMap"), "name")
                ref("Secret", volume.get("secret"), "secretName")
                for source in (volume.get("projected") or {}).get("sources") or []:
                    ref("ConfigMap", source.get("configMap"), "name")
                    ref("Secret", source.get("secret"), "name")
            for container in _containers(pod_spec):
                for source in container.get("envFrom") or []:
                    ref("ConfigMap", source.get("configMapRef"), "name")
                    ref("Secret", source.get("secretRef"), "name")
                for env in container.get("env") or []:
                    value_from = env.get("valueFrom") or {}
                    ref("ConfigMap", value_from.get("configMapKeyRef"), "name")
                    ref("Secret", value_from.get("secretKeyRef"), "name")


def _order_key(doc: Doc) -> tuple[int, str, str, str]:
    kind = doc["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind) - len(ORDER_FIRST)
    elif kind in ORDER_LAST:
        rank = ORDER_LAST.index(kind) + 1
    else:
        rank = 0
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    gvk = f"{group or '~G'}_{version}_{kind}"
    metadata = doc.get("metadata", {})
    return rank, gvk, metadata.get("namespace") or "", metadata.get("name", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a directory with a kustomization.yaml")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = dump(render(args.directory))
    except KustomizeError as exc:
        print(f"render_k8s: {exc}", file=sys.stderr)
        return 1
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
