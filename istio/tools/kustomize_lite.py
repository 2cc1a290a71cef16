#!/usr/bin/env python3
"""A small, offline subset of `kustomize build`, for the manifests in istio/.

Used where no kubectl/kustomize binary exists: by istio/tests/check_manifests.py
(to validate what an overlay really produces) and by the demo scripts' --dry-run
(to print the resources `kubectl apply -k` would apply).

Supported kustomization fields, and nothing else (anything else is an error, so a
field this renderer would silently ignore cannot slip through):
  resources   files (one or more YAML documents) and directories with a kustomization
  namespace   sets metadata.namespace on every namespaced resource
  patches     JSON 6902 patches (a YAML list of operations), from `path:` or inline
              `patch:`, with a `target` (group, version, kind, name, namespace)
  images      name -> newName / newTag / digest, on containers and initContainers

    python3 istio/tools/kustomize_lite.py build istio/overlays/dev
"""

from __future__ import annotations

import copy
import os
import sys
from typing import Any

import yaml

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "patches", "images"}
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "PriorityClass",
}


class KustomizeError(Exception):
    """A kustomization this renderer cannot (or must not) render."""


def load_documents(path: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file."""
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
    return docs


def _kustomization_file(directory: str) -> str:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _pointer_tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise KustomizeError(f"JSON pointer {pointer!r} does not start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _walk(doc: Any, tokens: list[str], pointer: str) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, list):
            try:
                node = node[int(token)]
            except (ValueError, IndexError) as e:
                raise KustomizeError(f"path {pointer}: no element {token}") from e
        elif isinstance(node, dict):
            if token not in node:
                raise KustomizeError(f"path {pointer}: no field {token!r}")
            node = node[token]
        else:
            raise KustomizeError(f"path {pointer}: cannot descend into a scalar")
    return node


def apply_json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/remove/replace/test on a copy of doc."""
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, pointer = op.get("op"), op.get("path", "")
        tokens = _pointer_tokens(pointer)
        if not tokens:
            raise KustomizeError("patching the document root is not supported")
        parent = _walk(doc, tokens[:-1], pointer)
        last = tokens[-1]
        if kind == "test":
            if _walk(doc, tokens, pointer) != op.get("value"):
                raise KustomizeError(
                    f"test failed at {pointer}: expected {op.get('value')!r}, "
                    f"found {_walk(doc, tokens, pointer)!r}"
                )
        elif kind == "add":
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-":
                    parent.append(value)
                else:
                    parent.insert(int(last), value)
            elif isinstance(parent, dict):
                parent[last] = value
            else:
                raise KustomizeError(f"add at {pointer}: parent is a scalar")
        elif kind == "remove":
            _walk(doc, tokens, pointer)  # must exist
            if isinstance(parent, list):
                del parent[int(last)]
            else:
                del parent[last]
        elif kind == "replace":
            _walk(doc, tokens, pointer)  # must exist
            if isinstance(parent, list):
                parent[int(last)] = copy.deepcopy(op["value"])
            else:
                parent[last] = copy.deepcopy(op["value"])
        else:
            raise KustomizeError(f"unsupported JSON 6902 operation {kind!r}")
    return doc


def _matches(target: dict[str, Any], doc: dict[str, Any]) -> bool:
    api = doc.get("apiVersion", "")
    group, _, version = api.rpartition("/")
    meta = doc.get("metadata", {})
    checks = {
        "group": group,
        "version": version,
        "kind": doc.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
    }
    for key, value in target.items():
        if key not in checks:
            raise KustomizeError(f"unsupported patch target field {key!r}")
        if checks[key] != value:
            return False
    return True


def _set_images(doc: dict[str, Any], images: list[dict[str, Any]]) -> None:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec") if "template" in spec else None
    if doc.get("kind") == "Pod":
        pod = spec
    if not pod:
        return
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        image = container.get("image", "")
        name = image.split("@")[0]
        if ":" in name.rsplit("/", 1)[-1]:
            name = name.rsplit(":", 1)[0]
        for rule in images:
            if rule.get("name") != name:
                continue
            new = rule.get("newName", name)
            if "digest" in rule:
                container["image"] = f"{new}@{rule['digest']}"
            elif "newTag" in rule:
                container["image"] = f"{new}:{rule['newTag']}"
            else:
                container["image"] = image.replace(name, new, 1)


def build(directory: str) -> list[dict[str, Any]]:
    """The resources a kustomization directory renders to, in order."""
    path = _kustomization_file(directory)
    with open(path, encoding="utf-8") as f:
        k = yaml.safe_load(f) or {}
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: unsupported field(s) {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        full = os.path.normpath(os.path.join(directory, entry))
        if os.path.isdir(full):
            resources.extend(build(full))
        elif os.path.isfile(full):
            resources.extend(load_documents(full))
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")
    if "namespace" in k:
        for doc in resources:
            if doc.get("kind") not in CLUSTER_SCOPED_KINDS:
                doc.setdefault("metadata", {})["namespace"] = k["namespace"]
    for patch in k.get("patches", []):
        if "path" in patch:
            with open(os.path.join(directory, patch["path"]), encoding="utf-8") as f:
                ops = yaml.safe_load(f)
        elif "patch" in patch:
            ops = yaml.safe_load(patch["patch"])
        else:
            raise KustomizeError(f"{path}: a patch has neither path nor patch")
        if not isinstance(ops, list):
            raise KustomizeError(f"{path}: only JSON 6902 patches (a list of operations) are supported")
        target = patch.get("target")
        if not target:
            raise KustomizeError(f"{path}: a JSON 6902 patch needs a target")
        hits = [i for i, d in enumerate(resources) if _matches(target, d)]
        if not hits:
            raise KustomizeError(f"{path}: patch target {target} matches no resource")
        for i in hits:
            try:
                resources[i] = apply_json6902(resources[i], ops)
            except KustomizeError as e:
                raise KustomizeError(f"{path}: patch {patch.get('path', '(inline)')}: {e}") from e
    if k.get("images"):
        for doc in resources:
            _set_images(doc, k["images"])
    return resources


def dump(resources: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(resources, sort_keys=False, width=1 << 16)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "build":
        print("usage: kustomize_lite.py build DIR", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dump(build(argv[2])))
    except (KustomizeError, OSError, yaml.YAMLError) as e:
        print(f"kustomize_lite: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
