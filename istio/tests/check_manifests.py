#!/usr/bin/env python3
"""Offline checks of Mazu's Istio manifests (istio/), run by `just istio-check`.

Everything that can be checked without a cluster:

  parse       every YAML file under istio/ parses
  render      the kustomizations (base, overlays/dev, namespace) render
              (istio/tools/kustomize_lite.py, the subset of kustomize they use)
  crd         every Istio resource validates against the OpenAPI schema of its CRD in
              ../shared/istio-crds/istio-crds.gen.yaml, strictly (unknown fields are
              errors, as with `kubectl apply --validate=strict`); the CRDs' CEL rules
              that apply to these kinds are evaluated by hand-written equivalents
  core        every core Kubernetes resource validates with kubernetes-validate
              (Kubernetes 1.33 schemas, strict), also the Pods the "mazu" and
              "mazu-pod" injection templates of istio/install/istio-mazu.yaml produce
  consistent  the curator cluster, authority, trust domain, audience, issuer and JWKS
              agree across the Service, the curator, the agent template and both
              WasmPlugins
  validator   the handshake validator as delivered: the DaemonSet's --validator-config is
              a key of ConfigMap mazu-validator mounted into the agent, not optional; its
              JSON is accepted by the module's own parser (`cargo run -p mazu-validator
              --example check_config`), its registry_file lies where the "mazu" template
              mounts the pod's socket directory into istio-proxy, its trust is the
              WasmPlugins'; both templates' istio-proxy has ENVOY_DYNAMIC_MODULES_SEARCH_PATH
              = the read-only mount of the emptyDir its init container copies the module
              into, "mazu-pod" exactly as "mazu"; the "mazu-pod" agent's --validator-config
              is ConfigMap mazu-validator of the pod's namespace (istio/namespace), not
              optional, whose registry_file it can write where istio-proxy reads it, and
              whose JSON passes the same checks and parser
  plugin      each WasmPlugin's pluginConfig, passed through google.protobuf.Struct as
              Istio does, is accepted by the filter's own parser
              (`cargo run -p mazu-filter --example check_config`)
  envoy       the EnvoyFilter patches, applied with Istio's MERGE semantics to a
              representative sidecar configuration (tests/fixtures/sidecar-envoy.yaml),
              with both WasmPlugins rendered in as the real mazu_filter.wasm, give a
              configuration the real Envoy accepts (`envoy --mode validate`, which also
              runs the filter's on_configure)
  negative    cases that must fail do fail: schema errors (tests/fixtures/negative),
              bad pluginConfigs (parser and real Envoy), the naive EnvoyFilter
              patches these manifests avoid (Envoy rejects the result), and variants of
              the node agent and validator manifests derived from the real ones in code
              (with --destinations-from-kubernetes: the ClusterRole bound to the agent
              lists services, pods and endpointslices and grants nothing more, the token
              and CA are mounted into the agent)
  demo        istio/demo/run-all.sh --dry-run succeeds and prints every step

One line per check ("ok" or "FAIL"); exit status 1 if any check failed.
Environment: MAZU_ISTIO_CRDS (CRD bundle path), MAZU_ENVOY (Envoy binary),
MAZU_FILTER_WASM (the filter .wasm), MAZU_VALIDATOR_MODULE (libmazu_validator.so; by
default built with `cargo build -p mazu-validator`), CARGO_TARGET_DIR (as cargo).
"""

from __future__ import annotations

import copy
import json
import math
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - environment problem
    print(f"FAIL setup: missing Python package ({e}); run `bash scripts/setup.sh`")
    sys.exit(1)

HERE = Path(__file__).resolve().parent
ISTIO = HERE.parent
REPO = ISTIO.parent
sys.dont_write_bytecode = True
sys.path.insert(0, str(ISTIO / "tools"))
import kustomize_lite  # noqa: E402

K8S_VERSION = "1.33.0"
KUSTOMIZATIONS = ["base", "overlays/dev", "namespace"]
ISTIO_GROUPS = (".istio.io",)
CURATOR_FQDN = "mazu-curator.mazu-system.svc.cluster.local"
# The cluster the EnvoyFilter mazu-curator-cluster adds and the WasmPlugins poll.
CURATOR_CLUSTER = "mazu-curator"


def checkpoint_verifier_key(name: str, public_key: bytes) -> str:
    """A C2SP note verifier key, as the curator serves at /v1/checkpoint/key."""
    import base64
    import hashlib

    key_hash = hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]
    encoded = base64.b64encode(b"\x01" + public_key).decode()
    return f"{name}+{key_hash.hex()}+{encoded}"


# The install overlay pins this one (the Ed25519 base point: a valid key whose
# secret nobody needs here).
CHECKPOINT_KEY = checkpoint_verifier_key("mazu-curator/586d2a9e3bd4c5b1", bytes.fromhex("58" + "66" * 31))


# --------------------------------------------------------------------------- report


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, name: str, detail: str = "") -> None:
        self.passed += 1
        print(f"ok   {name}" + (f"  ({detail})" if detail else ""), flush=True)

    def fail(self, name: str, detail: str) -> None:
        self.failed += 1
        detail = " ".join(detail.split())
        if len(detail) > 600:
            detail = detail[:600] + " ..."
        print(f"FAIL {name}: {detail}", flush=True)

    def check(self, name: str, condition: bool, detail: str) -> bool:
        if condition:
            self.ok(name)
        else:
            self.fail(name, detail)
        return condition


def rel(path: Path | str) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def describe(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata", {})
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


# ------------------------------------------------------------------ CRD schemas


def structural_to_jsonschema(s: Any) -> Any:
    """A Kubernetes structural schema as a strict JSON Schema.

    Like the API server with strict field validation: a field the schema does not
    list is an error unless x-kubernetes-preserve-unknown-fields allows it.
    """
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {}
    for key in (
        "type", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
        "minProperties", "maxProperties", "required", "uniqueItems", "multipleOf",
    ):
        if key in s:
            out[key] = s[key]
    for key in ("oneOf", "anyOf", "allOf"):
        if key in s:
            out[key] = [structural_to_jsonschema(x) for x in s[key]]
    if "not" in s:
        out["not"] = structural_to_jsonschema(s["not"])
    if "items" in s:
        out["items"] = structural_to_jsonschema(s["items"])
    if "properties" in s:
        out["properties"] = {k: structural_to_jsonschema(v) for k, v in s["properties"].items()}
    if isinstance(s.get("additionalProperties"), dict):
        out["additionalProperties"] = structural_to_jsonschema(s["additionalProperties"])
    elif "additionalProperties" in s:
        out["additionalProperties"] = s["additionalProperties"]
    elif "properties" in s and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def load_crd_validators(path: Path) -> dict[tuple[str, str], tuple[Any, dict[str, Any]]]:
    """(apiVersion, kind) -> (validator, original openAPIV3Schema)."""
    validators = {}
    with open(path, encoding="utf-8") as f:
        for crd in yaml.safe_load_all(f):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                js = structural_to_jsonschema(schema)
                js.setdefault("properties", {})
                js["properties"]["apiVersion"] = {"type": "string"}
                js["properties"]["kind"] = {"type": "string"}
                js["properties"]["metadata"] = {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 253},
                        "namespace": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                }
                js["required"] = sorted(set(js.get("required", [])) | {"apiVersion", "kind", "metadata"})
                js["additionalProperties"] = False
                validator = jsonschema.Draft7Validator(js)
                validators[(f"{group}/{version['name']}", kind)] = (validator, schema)
    return validators


def _has(value: Any, field: str) -> bool:
    return isinstance(value, dict) and field in value


# CEL rules of the Istio CRDs, as Python. A rule not listed here is counted as not
# evaluated (and reported), never silently taken as passed.
def _url_scheme_ok(url: str) -> bool:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    scheme = m.group(1).lower() if m else ""
    return scheme in ("", "http", "https", "oci", "file")


def _normalize(rule: str) -> str:
    return " ".join(rule.split())


def _port_level_mtls_rule(v: Any) -> bool:
    if "portLevelMtls" not in v:
        return True
    return len((v.get("selector") or {}).get("matchLabels") or {}) > 0


CEL_RULES: dict[str, Callable[[Any], bool]] = {
    '!self.contains("*")': lambda v: "*" not in v,
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    "self.all(key, key.size() != 0)": lambda v: all(len(k) for k in v),
    "self.size() == 0": lambda v: len(v) == 0,
    "0 < self && self <= 65535": lambda v: 0 < v <= 65535,
    "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda v: sum(_has(v, f) for f in ("workloadSelector", "targetRefs")) <= 1,
    "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? "
    "self.selector.matchLabels : {}).size() > 0) : true": _port_level_mtls_rule,
    "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1":
        lambda v: sum(_has(v, f) for f in ("selector", "targetRef", "targetRefs")) <= 1,
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda v: v.get("valueFrom", "") != "HOST" or "value" not in v,
    'has(self.context) ? ((self.context == "WAYPOINT") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)':
        lambda v: (_has(v, "waypoint") if v.get("context") == "WAYPOINT" else not _has(v, "waypoint")),
}
URL_RULE_PREFIX = "isURL(self) ? (url(self).getScheme() in"


def cel_problems(schema: Any, value: Any, path: str, unevaluated: set[str]) -> list[str]:
    """Evaluates the x-kubernetes-validations rules along value's actual shape."""
    problems: list[str] = []
    if not isinstance(schema, dict):
        return problems
    for rule in schema.get("x-kubernetes-validations", []):
        fn = CEL_RULES.get(_normalize(rule["rule"]))
        if rule["rule"].startswith(URL_RULE_PREFIX):
            fn = _url_scheme_ok
        if fn is None:
            unevaluated.add(_normalize(rule["rule"]))
            continue
        try:
            passed = fn(value)
        except (TypeError, AttributeError):
            passed = False
        if not passed:
            problems.append(f"{path or '<root>'}: {rule.get('message', _normalize(rule['rule']))}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None:
                problems += cel_problems(sub, v, f"{path}.{k}" if path else k, unevaluated)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            problems += cel_problems(schema["items"], v, f"{path}[{i}]", unevaluated)
    return problems


class Validator:
    """Validates one resource: Istio kinds against the CRDs, core kinds with kubernetes-validate."""

    def __init__(self, crds: dict[tuple[str, str], tuple[Any, dict[str, Any]]]) -> None:
        self.crds = crds
        self.unevaluated_cel: set[str] = set()

    def is_istio(self, doc: dict[str, Any]) -> bool:
        group = doc.get("apiVersion", "").rpartition("/")[0]
        return group.endswith(ISTIO_GROUPS)

    def errors(self, doc: dict[str, Any]) -> list[str]:
        key = (doc.get("apiVersion", ""), doc.get("kind", ""))
        if self.is_istio(doc):
            if key not in self.crds:
                return [f"no CRD schema for {key[0]} {key[1]}"]
            validator, schema = self.crds[key]
            errs = [
                f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
                for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
            ]
            errs += cel_problems(schema, doc, "", self.unevaluated_cel)
            return errs
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            return [f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}"]
        except kubernetes_validate.SchemaNotFoundError as e:
            return [e.message]
        return []


# ------------------------------------------------------------- the node agent

SOCKET_DIR = "/var/run/secrets/workload-spiffe-uds"  # where istio-agent looks for "socket"
POD_UID_ENV = "MAZU_POD_UID"
KUBELET_PODS = "/var/lib/kubelet/pods"
ALLOWED_CAPS = {"DAC_READ_SEARCH", "CHOWN"}
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name",
              "volumeMounts": "mountPath", "env": "name"}


def flag(args: list[str], name: str) -> str | None:
    if name in args and args.index(name) + 1 < len(args):
        return args[args.index(name) + 1]
    return None


def strategic_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Merges `src` into `dst` like a strategic merge patch of a Pod (what istiod does with
    the templates of inject.istio.io/templates, in order): maps recursively, the lists
    of MERGE_KEYS by their key, anything else replaced."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            strategic_merge(dst[k], v)
        elif isinstance(v, list) and k in MERGE_KEYS and isinstance(dst.get(k), list):
            key = MERGE_KEYS[k]
            for item in v:
                match = next((d for d in dst[k] if isinstance(d, dict) and d.get(key) == item.get(key)), None)
                if match is None:
                    dst[k].append(copy.deepcopy(item))
                else:
                    strategic_merge(match, item)
        else:
            dst[k] = copy.deepcopy(v)


def drop_nulls(value: Any) -> Any:
    """What the API server does with null fields: they are unset."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def injected_pod(template: dict[str, Any]) -> dict[str, Any]:
    """The Pod a Mazu workload gets from `inject.istio.io/templates: sidecar,<template>` with
    `sidecar.istio.io/nativeSidecar: "false"`, as far as the templates touch it: the
    "sidecar" template's istio-proxy (a regular container) mounting the volume
    workload-socket at SOCKET_DIR, whose emptyDir Istio leaves null so that a custom
    template may give that volume another type (as its SPIRE template does), then the
    custom template merged in."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleep", "namespace": "mazu-demo", "labels": {"app": "sleep"}},
        "spec": {
            "initContainers": [],
            "containers": [
                {"name": "app", "image": "docker.io/curlimages/curl:8.11.1"},
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.27.0",
                 "args": ["proxy", "sidecar"],
                 "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True},
                 "volumeMounts": [{"name": "workload-socket", "mountPath": SOCKET_DIR}]},
            ],
            "volumes": [{"name": "workload-socket", "emptyDir": None}],
        },
    }
    strategic_merge(pod, {k: v for k, v in template.items() if k in ("metadata", "spec")})
    pod = drop_nulls(pod)
    for v in pod["spec"]["volumes"]:
        if set(v) == {"name"}:
            v["emptyDir"] = {}  # the API server's default volume type
    return pod


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return pod["spec"].get("initContainers", []) + pod["spec"].get("containers", [])


def daemonset_problems(ds: dict[str, Any], namespaces: dict[str, dict[str, Any]]) -> list[str]:
    """What the node agent's DaemonSet must have (docs/istio.md, "The agent")."""
    problems: list[str] = []
    spec = ds["spec"]["template"]["spec"]
    agent = next((c for c in spec.get("containers", []) if (c.get("args") or [None])[0] == "node"), None)
    if agent is None:
        return ["no container runs `mazu-agent node`"]
    args = agent["args"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in agent.get("volumeMounts", [])}

    def host_mount(name: str, default: str | None, read_only: bool) -> None:
        path = flag(args, name) or default
        mount = mounts.get(path) if path else None
        if mount is None:
            problems.append(f"{name} {path} is not a mounted volume")
            return
        host = volumes.get(mount["name"], {}).get("hostPath", {}).get("path")
        if host != path:
            problems.append(f"{name} {path} is not the node's {path} (hostPath {host})")
        if bool(mount.get("readOnly")) != read_only:
            problems.append(f"{name} {path} must be mounted {'read-only' if read_only else 'read-write'}")

    host_mount("--pods-dir", KUBELET_PODS, True)
    pods_mount = mounts.get(flag(args, "--pods-dir") or KUBELET_PODS, {})
    if pods_mount and pods_mount.get("mountPropagation") != "HostToContainer":
        problems.append("--pods-dir needs mountPropagation HostToContainer (the kubelet mounts each "
                        "pod's projected volume after the agent started)")
    if (flag(args, "--pods-dir") or KUBELET_PODS) != KUBELET_PODS:
        problems.append(f"--pods-dir is not the kubelet's {KUBELET_PODS}")
    host_mount("--socket-root", "/run/mazu/pods", False)
    if flag(args, "--state-root") is None:
        problems.append("no --state-root")
    else:
        host_mount("--state-root", None, False)
    if flag(args, "--socket-owner") is None:
        problems.append("no --socket-owner: istio-proxy (1337) could not connect to a 0600 socket")
    sc = agent.get("securityContext", {})
    caps = sc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []):
        problems.append("capabilities are not all dropped")
    if set(caps.get("add", [])) - ALLOWED_CAPS:
        problems.append(f"capabilities added beyond {sorted(ALLOWED_CAPS)}: {caps.get('add')}")
    if sc.get("privileged") or sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem"):
        problems.append("must be unprivileged, without privilege escalation, with a read-only root file system")
    seccomp = sc.get("seccompProfile") or spec.get("securityContext", {}).get("seccompProfile", {})
    if seccomp.get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in agent:
            problems.append(f"no {probe}")
    res = agent.get("resources", {})
    if not res.get("requests") or "memory" not in res.get("limits", {}):
        problems.append("resources need requests and a memory limit")
    if not any(t.get("operator") == "Exists" and "key" not in t for t in spec.get("tolerations", [])):
        problems.append("does not tolerate every taint: Mazu pods on tainted nodes would wait for a socket forever")
    if spec.get("hostNetwork") or spec.get("hostPID"):
        problems.append("hostNetwork/hostPID are not needed")
    ns = namespaces.get(ds["metadata"].get("namespace", ""))
    level = (ns or {}).get("metadata", {}).get("labels", {}).get("pod-security.kubernetes.io/enforce", "privileged")
    if ns is None:
        problems.append(f"namespace {ds['metadata'].get('namespace')} is not part of the manifests")
    elif level != "privileged":
        problems.append(f"namespace {ns['metadata']['name']} enforces Pod Security {level!r}, which refuses hostPath volumes")
    return problems


def node_template_problems(pod: dict[str, Any], ds: dict[str, Any], audience: str) -> list[str]:
    """What the injected Pod of the DaemonSet template must have to get exactly its own
    socket from the node agent, and to start istio-proxy only once that socket serves."""
    problems: list[str] = []
    args = next(c for c in ds["spec"]["template"]["spec"]["containers"] if (c.get("args") or [None])[0] == "node")["args"]
    socket_root = flag(args, "--socket-root") or "/run/mazu/pods"
    owner = int((flag(args, "--socket-owner") or "-1").partition(":")[0])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    sock = volumes.get("workload-socket", {})
    if sock.get("hostPath", {}).get("path") != socket_root or len(sock) != 2:
        problems.append(f"volume workload-socket is not (only) the hostPath {socket_root} (the DaemonSet's --socket-root): {sock}")
    expr = f"$({POD_UID_ENV})"
    for c in all_containers(pod):
        for m in c.get("volumeMounts", []):
            if m["name"] != "workload-socket":
                continue
            if m.get("subPathExpr") != expr:
                problems.append(f"{c['name']}: the workload-socket mount lacks subPathExpr {expr} (the pod would see every pod's socket)")
            if not m.get("readOnly"):
                problems.append(f"{c['name']}: the workload-socket mount is not read-only")
            env = {e["name"]: e for e in c.get("env", [])}
            ref = env.get(POD_UID_ENV, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if ref != "metadata.uid":
                problems.append(f"{c['name']}: {POD_UID_ENV} is not the downward API metadata.uid")
    proxy = next((c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"), None)
    if proxy is None or not any(m["mountPath"] == SOCKET_DIR and m["name"] == "workload-socket"
                                for m in proxy.get("volumeMounts", [])):
        problems.append(f"istio-proxy (a regular container) does not mount workload-socket at {SOCKET_DIR}")
    waits = [c for c in pod["spec"].get("initContainers", []) if (c.get("args") or [None])[0] == "wait-socket"]
    if not waits:
        problems.append("no init container runs `mazu-agent wait-socket`: istio-proxy could start before the "
                        "socket exists and serve istiod's certificate")
    for w in waits:
        if flag(w["args"], "--path") != f"{SOCKET_DIR}/socket":
            problems.append(f"{w['name']}: --path is not {SOCKET_DIR}/socket")
        if w.get("restartPolicy") == "Always":
            problems.append(f"{w['name']}: a native sidecar does not hold istio-proxy back; it must be a plain init container")
        if w.get("securityContext", {}).get("runAsUser") != owner:
            problems.append(f"{w['name']}: runs as {w.get('securityContext', {}).get('runAsUser')}, "
                            f"not as the socket owner {owner} (it could not connect)")
    token_volume = flag(args, "--token-volume") or "mazu-token"
    token = volumes.get(token_volume, {}).get("projected", {}).get("sources", [{}])[0].get("serviceAccountToken", {})
    if token.get("audience") != audience:
        problems.append(f"projected token volume {token_volume!r}: audience {token.get('audience')!r} is not the curator's {audience!r}")
    if token.get("path") != (flag(args, "--token-path") or "token"):
        problems.append(f"projected token path {token.get('path')!r} is not the DaemonSet's --token-path")
    if not any(m["name"] == token_volume for c in all_containers(pod) for m in c.get("volumeMounts", [])):
        problems.append(f"no container mounts {token_volume!r}: the kubelet skips unused volumes and would never write the token")
    return problems


# ------------------------------------------------------ the handshake validator

SEARCH_PATH_ENV = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH"  # where Envoy looks for lib<name>.so
# What the ConfigMap sets explicitly (docs/validator.md, "Configuration"), defaults included.
VALIDATOR_FIELDS = ("registry_file", "max_registry_age_ms", "recheck_interval_ms", "trust", "destinations")


def validator_module_name() -> str | None:
    """The module name the node agent's ROOTCA gives Envoy (agent/src/sds.rs)."""
    source = (REPO / "agent" / "src" / "sds.rs").read_text(encoding="utf-8")
    m = re.search(r'VALIDATOR_MODULE_NAME: &str = "([^"]+)"', source)
    return m.group(1) if m else None


def node_agent_container(ds: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in ds["spec"]["template"]["spec"]["containers"] if (c.get("args") or [None])[0] == "node")


def pod_agent_container(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The per-pod agent (`mazu-agent run`) of a pod spec (the "mazu-pod" template's)."""
    return next((c for c in spec.get("initContainers", []) if (c.get("args") or [None])[0] == "run"), None)


def daemonset_validator_config(ds: dict[str, Any], configmaps: dict[tuple[str, str], dict[str, Any]]) -> tuple[str | None, list[str]]:
    """validator_config_source of the node agent's DaemonSet."""
    return validator_config_source(node_agent_container(ds), ds["spec"]["template"]["spec"],
                                   ds["metadata"].get("namespace", ""), configmaps)


DESTINATIONS_FLAG = "--destinations-from-kubernetes"
KUBE_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# What --destinations-from-kubernetes lists: (API group, resource).
KUBE_LISTS = {("", "services"), ("", "pods"), ("discovery.k8s.io", "endpointslices")}


def spec_automounts(ds: dict[str, Any]) -> bool:
    return bool(ds["spec"]["template"]["spec"].get("automountServiceAccountToken", True))


def derives_destinations(ds: dict[str, Any]) -> bool:
    return DESTINATIONS_FLAG in node_agent_container(ds).get("args", [])


def kubernetes_access_problems(ds: dict[str, Any], base: list[dict[str, Any]]) -> list[str]:
    """What --destinations-from-kubernetes needs (docs/agent.md, "Destinations from
    Kubernetes"): --validator-config; a ClusterRole bound to the DaemonSet's service
    account that lets it list services, pods and endpointslices in every namespace, and
    nothing more (read-only, those resources only); the token and CA mounted into the
    agent container where it reads them (--kubernetes-token-file, --kubernetes-ca-file)."""
    agent = node_agent_container(ds)
    args = agent.get("args", [])
    if DESTINATIONS_FLAG not in args:
        return []
    problems: list[str] = []
    if flag(args, "--validator-config") is None:
        problems.append(f"{DESTINATIONS_FLAG} without --validator-config: the agent refuses to start")
    spec = ds["spec"]["template"]["spec"]
    namespace = ds["metadata"].get("namespace", "")
    account = spec.get("serviceAccountName") or "default"
    roles = {d["metadata"]["name"]: d for d in base if d.get("kind") == "ClusterRole"}
    granted: set[tuple[str, str]] = set()
    for binding in (d for d in base if d.get("kind") == "ClusterRoleBinding"):
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account and s.get("namespace") == namespace
                   for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef", {})
        role = roles.get(ref.get("name")) if ref.get("kind") == "ClusterRole" else None
        if role is None:
            problems.append(f"ClusterRoleBinding {binding['metadata']['name']} refers to no ClusterRole of the manifests")
            continue
        for rule in role.get("rules") or []:
            verbs = set(rule.get("verbs") or [])
            pairs = {(g, res) for g in rule.get("apiGroups") or [] for res in rule.get("resources") or []}
            if verbs - {"get", "list", "watch"} or pairs - KUBE_LISTS:
                problems.append(f"ClusterRole {role['metadata']['name']} grants more than reading services, pods and "
                                f"endpointslices: {sorted(verbs)} on {sorted(pairs)}")
            if "list" in verbs or "*" in verbs:
                granted |= pairs & KUBE_LISTS
    missing = sorted(f"{res}.{g}" if g else res for g, res in KUBE_LISTS - granted)
    if missing:
        problems.append(f"{DESTINATIONS_FLAG}: service account {namespace}/{account} may not list {missing} cluster-wide "
                        "(no ClusterRole bound to it grants it): every poll fails and no destination is derived")
    token = flag(args, "--kubernetes-token-file") or f"{KUBE_SA_DIR}/token"
    ca = flag(args, "--kubernetes-ca-file") or f"{KUBE_SA_DIR}/ca.crt"
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for what, path, source in (("token", token, "serviceAccountToken"), ("CA", ca, "configMap")):
        directory = posixpath.dirname(path)
        mount = next((m for m in agent.get("volumeMounts", []) if posixpath.normpath(m["mountPath"]) == directory), None)
        sources = (volumes.get(mount["name"], {}).get("projected") or {}).get("sources", []) if mount else []
        if not any(source in src and (src[source].get("path") == posixpath.basename(path) or
                                      any(i.get("path") == posixpath.basename(path) for i in src[source].get("items", [])))
                   for src in sources):
            problems.append(f"{DESTINATIONS_FLAG}: the {what} file {path} is not in a projected volume mounted into the "
                            "agent container")
    return problems


def validator_config_source(agent: dict[str, Any] | None, spec: dict[str, Any], namespace: str,
                            configmaps: dict[tuple[str, str], dict[str, Any]]) -> tuple[str | None, list[str]]:
    """The JSON an agent's `--validator-config` reads: a key of a ConfigMap of the
    manifests in the agent's own namespace, mounted into the agent container, and not
    optional (a missing ConfigMap must stop the pod at the mount: fail closed)."""
    if agent is None:
        return None, ["no agent container (`mazu-agent node` or `run`)"]
    path = flag(agent.get("args", []), "--validator-config")
    if path is None:
        return None, ["no --validator-config: the agent serves the SPKI pins and Envoy never loads the module"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = [m for m in agent.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None, [f"--validator-config {path} is not in a volume mounted into the agent"]
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    inner = path[len(mount["mountPath"].rstrip("/")) + 1:]
    ref = volumes.get(mount["name"], {}).get("configMap")
    if ref is None:
        return None, [f"--validator-config {path}: volume {mount['name']} is not a ConfigMap"]
    if mount.get("subPath") or mount.get("subPathExpr"):
        return None, [f"--validator-config {path}: the ConfigMap is mounted with a subPath (not modelled)"]
    problems = []
    if ref.get("optional"):
        problems.append(f"--validator-config {path}: ConfigMap {ref.get('name')} is optional: without it a pod must "
                        "not start at all (fail closed at the mount), not start and leave the refusal to the agent")
    key = {i["path"]: i["key"] for i in ref.get("items", [])}.get(inner) if ref.get("items") else inner
    cm = configmaps.get((namespace, ref.get("name", "")))
    if cm is None:
        return None, problems + [f"--validator-config {path}: ConfigMap {namespace}/{ref.get('name')} is not part of "
                                 "the manifests"]
    if key is None or key not in cm.get("data", {}):
        return None, problems + [f"--validator-config {path}: ConfigMap {ref['name']} has no key {key or inner!r}"]
    return (cm["data"][key], []) if not problems else (None, problems)


def registry_writer_problems(text: str, pod: dict[str, Any]) -> list[str]:
    """The per-pod agent (`run`) writes registry_file at exactly that path, and istio-proxy
    reads it at that path: the agent must mount, writable, the volume istio-proxy mounts at
    its directory, the same way (the node agent instead writes beside each pod's socket)."""
    try:
        registry = json.loads(text).get("registry_file")
    except (ValueError, AttributeError):
        return []  # validator_config_problems says why
    if not isinstance(registry, str):
        return []
    directory = posixpath.dirname(posixpath.normpath(registry))
    agent = pod_agent_container(pod["spec"]) or {}
    proxy = next((c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"), {})

    def mount_at(container: dict[str, Any]) -> dict[str, Any] | None:
        return next((m for m in container.get("volumeMounts", []) if posixpath.normpath(m["mountPath"]) == directory), None)

    theirs, mine = mount_at(proxy), mount_at(agent)
    if theirs is None:
        return []  # validator_config_problems says why
    if mine is None or any(mine.get(k) != theirs.get(k) for k in ("name", "subPath", "subPathExpr")):
        return [f"the per-pod agent does not mount volume {theirs['name']} at {directory} as istio-proxy does: it "
                f"would write registry_file {registry} where istio-proxy does not read it"]
    if mine.get("readOnly"):
        return [f"the per-pod agent mounts {directory} read-only: it cannot write registry_file {registry}"]
    return []


def sample_destinations(samples: list[dict[str, Any]], trust_domain: str) -> dict[str, set[str]]:
    """Host -> the SPIFFE IDs of the Mazu workloads behind each Service of the demo."""
    out: dict[str, set[str]] = {}
    deployments = [d for d in samples if d.get("kind") == "Deployment"]
    for svc in (d for d in samples if d.get("kind") == "Service"):
        ns = svc["metadata"].get("namespace", "default")
        selector = svc["spec"].get("selector") or {}
        ids = set()
        for d in deployments:
            template = d["spec"]["template"]
            labels = template["metadata"].get("labels", {})
            chosen = template["metadata"].get("annotations", {}).get("inject.istio.io/templates", "sidecar")
            if d["metadata"].get("namespace", "default") != ns or not selector or \
                    any(labels.get(k) != v for k, v in selector.items()) or \
                    not any(t.strip().startswith("mazu") for t in chosen.split(",")):
                continue
            account = template["spec"].get("serviceAccountName") or "default"
            ids.add(f"spiffe://{trust_domain}/ns/{ns}/sa/{account}")
        if ids:
            out[f"{svc['metadata']['name']}.{ns}.svc.cluster.local"] = ids
    return out


def validator_config_problems(text: str, pod: dict[str, Any], plugins: list[dict[str, Any]],
                              samples: list[dict[str, Any]], derived: bool = False) -> list[str]:
    """What the validator configuration must say to work in the injected pod: its registry
    file where the agent writes it as istio-proxy sees it, the filters' trust, and the
    demo's destinations. With `derived` (the agent runs --destinations-from-kubernetes)
    a demo host may be left out (the agent derives it), but one written by hand must
    still name the demo's service accounts: it wins over the derived entry."""
    try:
        cfg = json.loads(text)
    except ValueError as e:
        return [f"does not parse as JSON: {e}"]
    if not isinstance(cfg, dict):
        return ["is not a JSON object"]
    problems: list[str] = []
    missing = [f for f in VALIDATOR_FIELDS if f not in cfg]
    if missing:
        problems.append(f"fields not set: {missing} (the ConfigMap states every field)")
    proxy = next((c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"), {})
    socket_dirs = {posixpath.normpath(m["mountPath"]) for m in proxy.get("volumeMounts", []) if m["name"] == "workload-socket"}
    registry = cfg.get("registry_file")
    if isinstance(registry, str):
        name = posixpath.basename(registry)
        if posixpath.dirname(posixpath.normpath(registry)) not in socket_dirs or posixpath.normpath(registry) != registry:
            problems.append(f"registry_file {registry} is not in the directory where istio-proxy mounts the pod's socket "
                            f"directory ({', '.join(sorted(socket_dirs)) or 'none'}): the agent writes it beside the "
                            "socket (the node agent keeping only its file name)")
        elif name == "socket":
            problems.append("registry_file is named socket: the agent would write it over the SDS socket")
    trust = cfg.get("trust")
    for p in plugins:
        theirs = p["spec"]["pluginConfig"].get("trust")
        if struct_json(trust) != struct_json(theirs):
            fields = sorted(k for k in set(trust or {}) | set(theirs or {})
                            if (trust or {}).get(k) != (theirs or {}).get(k)) if isinstance(trust, dict) else ["<all>"]
            problems.append(f"trust differs from WasmPlugin {p['metadata']['name']}'s pluginConfig.trust in {fields}")
        stale = p["spec"]["pluginConfig"].get("max_staleness_secs")
        age = cfg.get("max_registry_age_ms")
        if isinstance(age, int) and isinstance(stale, int) and age > stale * 1000:
            problems.append(f"max_registry_age_ms {age} is more lenient than WasmPlugin {p['metadata']['name']}'s "
                            f"max_staleness_secs {stale}")
    destinations = cfg.get("destinations") if isinstance(cfg.get("destinations"), dict) else {}
    domain = trust.get("trust_domain", "") if isinstance(trust, dict) else ""
    for host, ids in sorted(sample_destinations(samples, domain).items()):
        if derived and host not in destinations:
            continue
        listed = set(destinations.get(host) or [])
        if listed != ids:
            problems.append(f"destinations[{host}] is {sorted(listed)}, but the demo's workloads behind that Service "
                            f"run as {sorted(ids)}")
    return problems


def module_delivery_problems(pod: dict[str, Any], module: str) -> list[str]:
    """How the injected pod's Envoy gets lib<module>.so: ENVOY_DYNAMIC_MODULES_SEARCH_PATH is
    the read-only mount of an emptyDir that only a plain, least-privilege init container
    writes, by copying the module into it."""
    filename = f"lib{module}.so"
    proxy = next((c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"), None)
    if proxy is None:
        return ["no istio-proxy container"]
    search = next((e.get("value") for e in proxy.get("env", []) if e["name"] == SEARCH_PATH_ENV), None)
    if not search:
        return [f"istio-proxy has no {SEARCH_PATH_ENV} (a plain value): Envoy would not find {filename}"]
    mount = next((m for m in proxy.get("volumeMounts", [])
                  if posixpath.normpath(m["mountPath"]) == posixpath.normpath(search)), None)
    if mount is None:
        return [f"{SEARCH_PATH_ENV} {search} is not where a volume is mounted into istio-proxy: Envoy would not "
                f"find {filename} there"]
    problems: list[str] = []
    volume = mount["name"]
    if not mount.get("readOnly"):
        problems.append(f"istio-proxy mounts the module volume {volume} writable: whoever runs in istio-proxy could "
                        "replace the module Envoy loads")
    if mount.get("subPath") or mount.get("subPathExpr"):
        problems.append(f"istio-proxy mounts the module volume {volume} with a subPath (not where it is written)")
    declared = next((v for v in pod["spec"].get("volumes", []) if v["name"] == volume), {})
    if set(declared) != {"name", "emptyDir"}:
        problems.append(f"volume {volume} is not an emptyDir of the pod (written only by its init container): {declared}")
    plain_inits = {c["name"] for c in pod["spec"].get("initContainers", []) if c.get("restartPolicy") != "Always"}
    copiers = []
    for c in all_containers(pod):
        for m in c.get("volumeMounts", []):
            if m["name"] != volume or m.get("readOnly"):
                continue
            if c["name"] not in plain_inits:
                problems.append(f"{c['name']} mounts the module volume {volume} writable; only a plain init container "
                                "(finished before istio-proxy starts) may")
                continue
            words = [str(w) for w in c.get("command", []) + c.get("args", [])]
            target = posixpath.normpath(m["mountPath"])
            if len(words) < 2 or not any(w.endswith("/" + filename) for w in words[:-1]) or \
                    posixpath.normpath(words[-1]) not in (target, f"{target}/{filename}"):
                problems.append(f"{c['name']} does not copy {filename} into {m['mountPath']} (the module volume): {words}")
            else:
                copiers.append(c)
    if not copiers:
        problems.append(f"no init container writes {filename} into the module volume {volume}: Envoy's search path is empty")
    for c in copiers:
        sc = c.get("securityContext", {})
        caps = sc.get("capabilities", {})
        if not sc.get("runAsNonRoot") or sc.get("runAsUser") in (None, 0):
            problems.append(f"{c['name']}: runs as root (or without runAsNonRoot and a runAsUser)")
        if sc.get("privileged") or sc.get("allowPrivilegeEscalation") is not False or not sc.get("readOnlyRootFilesystem") \
                or "ALL" not in caps.get("drop", []) or caps.get("add"):
            problems.append(f"{c['name']}: not least privilege (privileged, privilege escalation, a writable root file "
                            "system or capabilities)")
        res = c.get("resources", {})
        if not res.get("requests") or "memory" not in res.get("limits", {}):
            problems.append(f"{c['name']}: resources need requests and a memory limit")
    return problems


def module_delivery_differences(template: dict[str, Any], reference: dict[str, Any], volume: str) -> list[str]:
    """Where `template` delivers the module (the volume `volume`) otherwise than `reference`
    (the "mazu" template): its writers, the volume, istio-proxy's mounts of it and search path."""
    def parts(t: dict[str, Any]) -> dict[str, list[Any]]:
        spec = t.get("spec", {})
        proxy = next((c for c in spec.get("containers", []) if c["name"] == "istio-proxy"), {})
        return {
            "init containers that mount it": [c for c in spec.get("initContainers", [])
                                              if any(m["name"] == volume for m in c.get("volumeMounts", []))],
            "volume": [v for v in spec.get("volumes", []) if v["name"] == volume],
            "istio-proxy's mounts of it": [m for m in proxy.get("volumeMounts", []) if m["name"] == volume],
            f"istio-proxy's {SEARCH_PATH_ENV}": [e for e in proxy.get("env", []) if e["name"] == SEARCH_PATH_ENV],
        }
    mine, theirs = parts(template), parts(reference)
    return [f"module volume {volume}: the {what} differ from the \"mazu\" template's: {mine[what]} != {theirs[what]}"
            for what in theirs if mine[what] != theirs[what]]


# -------------------------------------------------------------- pluginConfig


def struct_json(value: Any, path: str = "") -> Any:
    """value as it comes out of google.protobuf.Struct: every number a double.

    Istio stores pluginConfig as a Struct and hands the filter its JSON (protojson);
    a whole-number double prints without a fraction ("5000"), so integers survive
    if they are exact as doubles. Anything larger than 2^53 would not.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        as_double = float(value)
        if isinstance(value, int) and int(as_double) != value:
            raise ValueError(f"{path}: {value} is not exact as a double (google.protobuf.Struct)")
        if math.isfinite(as_double) and as_double.is_integer() and abs(as_double) < 1e21:
            return int(as_double)
        return as_double
    if isinstance(value, dict):
        return {k: struct_json(v, f"{path}.{k}" if path else k) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [struct_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{path}: {type(value).__name__} cannot be in a Struct")


def plugin_config_json(plugin: dict[str, Any]) -> str:
    return json.dumps(struct_json(plugin["spec"]["pluginConfig"]), separators=(",", ":"))


class ConfigChecker:
    """Runs a component's real configuration parser: the filter's
    (filter/examples/check_config.rs) or the handshake validator's
    (validator/examples/check_config.rs)."""

    def __init__(self, package: str = "mazu-filter") -> None:
        self.command = ["cargo", "run", "-q", "-p", package, "--example", "check_config"]

    def run(self, config: str) -> tuple[int, str]:
        proc = subprocess.run(
            self.command, input=config, text=True, capture_output=True, cwd=REPO, timeout=1800
        )
        out = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        return proc.returncode, out[-1] if out else ""


# ------------------------------------------------- EnvoyFilter patch application

# Fields of one oneof, for the messages the patches touch: setting one clears the others
# (protobuf merge semantics).
ONEOFS = [
    {"validation_context", "validation_context_sds_secret_config", "combined_validation_context",
     "validation_context_certificate_provider", "validation_context_certificate_provider_instance"},
    {"type", "cluster_type"},
    {"typed_config"},
]


class PatchError(Exception):
    pass


def proto_merge(dst: dict[str, Any], src: dict[str, Any], path: str = "") -> None:
    """proto.Merge on the JSON form: messages merge field by field, repeated fields
    append, scalars replace, a oneof member replaces its siblings, and an Any merges
    only with an Any of the same type (Istio's MergeAnyWithAny)."""
    for key, value in src.items():
        here = f"{path}.{key}" if path else key
        if key == "@type":
            if "@type" in dst and dst["@type"] != value:
                raise PatchError(f"{path}: cannot merge {value} into {dst['@type']}")
            dst["@type"] = value
            continue
        for group in ONEOFS:
            if key in group:
                for other in group - {key}:
                    dst.pop(other, None)
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            proto_merge(dst[key], value, here)
        elif isinstance(value, list) and isinstance(dst.get(key), list):
            dst[key] = dst[key] + copy.deepcopy(value)
        else:
            dst[key] = copy.deepcopy(value)


def merge_transport_socket_cluster(cluster: dict[str, Any], patch: dict[str, Any]) -> bool:
    """Istio's mergeTransportSocketCluster (pilot/pkg/networking/core/envoyfilter/cluster_patch.go).
    Returns True when the merge was handled here."""
    ts = patch.get("transport_socket")
    if ts is None:
        return False
    target = None
    matches = cluster.get("transport_socket_matches") or []
    if matches:
        for m in matches:
            if m.get("transport_socket", {}).get("name") == ts.get("name"):
                target = m["transport_socket"]
                break
        if target is None:
            return True  # dropped: a transport_socket beside matches is invalid
    elif cluster.get("transport_socket", {}).get("name") == ts.get("name"):
        target = cluster["transport_socket"]
    if target is None:
        cluster["transport_socket"] = copy.deepcopy(ts)
    elif target.get("typed_config") and ts.get("typed_config"):
        proto_merge(target["typed_config"], ts["typed_config"], "transport_socket.typed_config")
    return True


def merge_transport_socket_listener(chain: dict[str, Any], patch: dict[str, Any]) -> bool:
    """Istio's mergeTransportSocketListener (listener_patch.go)."""
    ts = patch.get("transport_socket")
    if ts is None or chain.get("transport_socket") is None:
        return False
    if chain["transport_socket"].get("name") != ts.get("name"):
        raise PatchError("transport socket name mismatch (not modelled)")
    if chain["transport_socket"].get("typed_config") and ts.get("typed_config"):
        proto_merge(chain["transport_socket"]["typed_config"], ts["typed_config"], "transport_socket.typed_config")
    return True


def context_of_listener(listener: dict[str, Any]) -> str:
    return "SIDECAR_INBOUND" if listener.get("traffic_direction") == "INBOUND" else "SIDECAR_OUTBOUND"


def context_of_cluster(cluster: dict[str, Any]) -> str | None:
    name = cluster["name"]
    if name.startswith("outbound|") or name in ("PassthroughCluster", "BlackHoleCluster"):
        return "SIDECAR_OUTBOUND"
    if name.startswith("inbound|") or name == "InboundPassthroughCluster":
        return "SIDECAR_INBOUND"
    return None  # bootstrap clusters (sds-grpc, xds-grpc)


def _context_ok(patch_context: str, actual: str | None) -> bool:
    return actual is not None and patch_context in ("ANY", actual)


def chain_matches(match: dict[str, Any], chain: dict[str, Any]) -> bool:
    fc_match = match.get("listener", {}).get("filterChain")
    if not fc_match:
        return True
    fcm = chain.get("filter_chain_match", {})
    # `filter` selects filters inside the chain (NETWORK_FILTER patches).
    unsupported = set(fc_match) - {"name", "transportProtocol", "destinationPort", "filter"}
    if unsupported:
        raise PatchError(f"filterChain match field(s) {sorted(unsupported)} not modelled")
    if "name" in fc_match and fc_match["name"] != chain.get("name"):
        return False
    if "transportProtocol" in fc_match and fcm.get("transport_protocol") != fc_match["transportProtocol"]:
        return False
    if "destinationPort" in fc_match and fcm.get("destination_port") != fc_match["destinationPort"]:
        return False
    return True


def cluster_matches(match: dict[str, Any], cluster: dict[str, Any]) -> bool:
    cm = match.get("cluster")
    if not cm:
        return True
    if "name" in cm:
        return cm["name"] == cluster["name"]
    parts = cluster["name"].split("|")
    if len(parts) != 4:
        return not (cm.get("service") or cm.get("subset") or cm.get("portNumber"))
    _, port, subset, host = parts
    if cm.get("subset") and cm["subset"] != subset:
        return False
    if cm.get("service") and cm["service"] != host:
        return False
    return not cm.get("portNumber") or str(cm["portNumber"]) == port


def apply_envoy_filters(config: dict[str, Any], envoy_filters: list[dict[str, Any]]) -> list[str]:
    """Applies the EnvoyFilters' MERGE patches (FILTER_CHAIN, NETWORK_FILTER, CLUSTER) and ADD patches
    (CLUSTER) in place; returns what was patched. As in Istio (ApplyClusterMerge, then
    InsertedClusters), MERGE patches touch Istio's own clusters only: added clusters
    are appended afterwards, as written."""
    applied: list[str] = []
    static = config["static_resources"]
    added: list[dict[str, Any]] = []
    for ef in envoy_filters:
        for cp in ef["spec"]["configPatches"]:
            op = cp["patch"]["operation"]
            value = cp["patch"]["value"]
            ctx = cp.get("match", {}).get("context", "ANY")
            if op == "ADD" and cp["applyTo"] == "CLUSTER":
                if ctx != "SIDECAR_OUTBOUND":
                    raise PatchError(f"ADD of a cluster in context {ctx} not modelled")
                added.append(copy.deepcopy(value))
                applied.append(f"+{value['name']}")
                continue
            if op != "MERGE":
                raise PatchError(f"operation {op} not modelled")
            if cp["applyTo"] == "FILTER_CHAIN":
                for listener in static["listeners"]:
                    if not _context_ok(ctx, context_of_listener(listener)):
                        continue
                    lname = cp.get("match", {}).get("listener", {}).get("name")
                    if lname and lname != listener["name"]:
                        continue
                    for chain in listener["filter_chains"]:
                        if chain_matches(cp.get("match", {}), chain):
                            if not merge_transport_socket_listener(chain, value):
                                proto_merge(chain, value)
                            applied.append(f"{listener['name']}/{chain.get('name', '-')}")
            elif cp["applyTo"] == "NETWORK_FILTER":
                # Istio merges the value into each filter of a matching chain whose name
                # is the match's filterChain.filter.name (MergeAnyWithAny on typed_config).
                fname = cp.get("match", {}).get("listener", {}).get("filterChain", {}).get("filter", {}).get("name")
                if not fname:
                    raise PatchError("NETWORK_FILTER MERGE without filterChain.filter.name not modelled")
                for listener in static["listeners"]:
                    if not _context_ok(ctx, context_of_listener(listener)):
                        continue
                    for chain in listener["filter_chains"]:
                        if not chain_matches(cp.get("match", {}), chain):
                            continue
                        for f in chain.get("filters", []):
                            if f.get("name") == fname:
                                proto_merge(f, value)
                                applied.append(f"{listener['name']}/{chain.get('name', '-')}/{fname}")
            elif cp["applyTo"] == "CLUSTER":
                for cluster in static["clusters"]:
                    if _context_ok(ctx, context_of_cluster(cluster)) and cluster_matches(cp.get("match", {}), cluster):
                        if not merge_transport_socket_cluster(cluster, value):
                            proto_merge(cluster, value)
                        applied.append(cluster["name"])
            else:
                raise PatchError(f"applyTo {cp['applyTo']} not modelled")
    static["clusters"].extend(added)
    return applied


def render_wasm_plugins(config: dict[str, Any], plugins: list[dict[str, Any]], wasm_path: Path) -> None:
    """Puts each WasmPlugin into the chains Istio would, as the filter istio-agent hands
    Envoy after fetching the module (ECDS, code rewritten to the local file): first in
    the inbound chains (SERVER) or the outbound listeners' chains (CLIENT)."""
    for plugin in plugins:
        spec = plugin["spec"]
        name = f"{plugin['metadata']['namespace']}.{plugin['metadata']['name']}"
        modes = {m.get("mode", "CLIENT_AND_SERVER") for m in spec.get("match", [{}])}
        directions = set()
        if modes & {"SERVER", "CLIENT_AND_SERVER", "UNDEFINED"}:
            directions.add("SIDECAR_INBOUND")
        if modes & {"CLIENT", "CLIENT_AND_SERVER", "UNDEFINED"}:
            directions.add("SIDECAR_OUTBOUND")
        wasm_filter = {
            "name": name,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                "config": {
                    "name": name,
                    "root_id": spec.get("pluginName", ""),
                    "fail_open": spec.get("failStrategy") == "FAIL_OPEN",
                    "vm_config": {
                        "vm_id": name,
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": str(wasm_path)}},
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": plugin_config_json(plugin),
                    },
                },
            },
        }
        for listener in config["static_resources"]["listeners"]:
            if context_of_listener(listener) not in directions:
                continue
            for chain in listener["filter_chains"]:
                if chain.get("name") == "virtualInbound-blackhole":
                    continue
                chain["filters"].insert(0, copy.deepcopy(wasm_filter))


def envoy_validate(envoy: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                   cwd: str | None = None) -> tuple[bool, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        path = f.name
    try:
        proc = subprocess.run(
            [str(envoy), "--mode", "validate", "-c", path, "--log-level", "error"],
            capture_output=True, text=True, timeout=300, env=env, cwd=cwd,
        )
    finally:
        os.unlink(path)
    text = (proc.stdout + proc.stderr).strip()
    lines = [l for l in text.splitlines() if l.strip()]
    # Envoy prints "configuration '<path>' OK" on stdout; a module may write to stderr after it.
    ok = proc.returncode == 0 and any(l.startswith("configuration '") and l.rstrip().endswith("' OK") for l in lines)
    reason = next((l for l in lines if "mazu-filter:" in l or "mazu-validator: configuration refused" in l), None) or next(
        (l for l in reversed(lines) if "rror" in l or "failed" in l or "critical" in l), lines[-1] if lines else "")
    reason = reason.split("] ", 1)[-1] if reason.startswith("[") else reason
    return ok, reason.strip()


def module_rootca(module: str, config_json: str) -> dict[str, Any]:
    """ROOTCA as the node agent serves it with --validator-config (agent/src/sds.rs,
    module_validation_context): the module alone, no CA, no pins."""
    return {"custom_validator_config": {
        "name": "envoy.tls.cert_validator.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.cert_validator."
                     "dynamic_modules.v3.DynamicModuleCertValidatorConfig",
            "dynamic_module_config": {"name": module},
            "validator_name": "mazu",
            "validator_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config_json},
        }}}


def with_rootca_inline(config: dict[str, Any], rootca: dict[str, Any]) -> int:
    """The sidecar once the agent's ROOTCA arrived: every reference to the SDS secret
    ROOTCA (the inbound chains' combined context, whose default part is empty, and the
    outbound clusters' tlsMode-istio contexts) replaced by its content. Returns how many."""
    count = 0

    def visit(node: Any) -> None:
        nonlocal count
        if isinstance(node, dict):
            ctx = node.get("common_tls_context")
            if isinstance(ctx, dict):
                cvc = ctx.get("combined_validation_context")
                if isinstance(cvc, dict) and cvc.get("validation_context_sds_secret_config", {}).get("name") == "ROOTCA" \
                        and not cvc.get("default_validation_context"):
                    del ctx["combined_validation_context"]
                    ctx["validation_context"] = copy.deepcopy(rootca)
                    count += 1
                elif ctx.get("validation_context_sds_secret_config", {}).get("name") == "ROOTCA":
                    del ctx["validation_context_sds_secret_config"]
                    ctx["validation_context"] = copy.deepcopy(rootca)
                    count += 1
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(config)
    return count


def find_tls(chain_or_socket_holder: dict[str, Any]) -> dict[str, Any]:
    return chain_or_socket_holder.get("transport_socket", {}).get("typed_config", {})


# ------------------------------------------------------------------------ main


def flag_values(args: list[str], name: str) -> list[str]:
    """Every value of a repeatable flag."""
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]


def witness_problems(parties: dict[str, tuple[list[str], str | None]]) -> list[str]:
    """Every party (curator, agents, WasmPlugins) must list the same witnesses
    with the same quorum: a party with fewer would act on checkpoints the others
    refuse, and an agent without any refuses to start."""
    problems = []
    reference_name, reference = next(iter(parties.items()))
    for name, (witnesses, quorum) in parties.items():
        if not witnesses or not quorum:
            problems.append(f"{name} lists no witnesses or no quorum")
        elif (sorted(witnesses), quorum) != (sorted(reference[0]), reference[1]):
            problems.append(f"{name} lists witnesses {witnesses} quorum {quorum}, the {reference_name} "
                            f"{reference[0]} quorum {reference[1]}")
    return problems


def report_negatives(r: Report, checks: str, negatives: list[tuple[str, list[str], str]]) -> None:
    """One check per derived variant: the problems the `checks` found in it must
    include one mentioning its expected substring."""
    for what, found, expect in negatives:
        hit = next((p for p in found if expect in p), None)
        r.check(f"negative {checks} checks refuse a {what}", hit is not None,
                f"expected a problem mentioning {expect!r}, got {found or 'none'}")
        if hit:
            print(f"     -> {hit[:300]}")


def node_checks(r: Report, base: list[dict[str, Any]], template_pods: dict[str, dict[str, Any]],
                raw_templates: dict[str, dict[str, Any]], operator: dict[str, Any], env: dict[str, Any],
                curator_url: str, curator_pin: str | None) -> None:
    """The node agent's DaemonSet and the "mazu" template, and the cases they must refuse."""
    namespaces = {d["metadata"]["name"]: d for d in base if d.get("kind") == "Namespace"}
    daemonsets = [d for d in base if d.get("kind") == "DaemonSet" and d["metadata"]["name"] == "mazu-agent"]
    if not daemonsets:
        r.fail("node agent DaemonSet", "no DaemonSet mazu-agent in istio/base")
        return
    ds = daemonsets[0]
    problems = daemonset_problems(ds, namespaces)
    r.check("node agent DaemonSet: kubelet pods dir read-only + HostToContainer, socket and state roots, "
            "socket owner, least privilege, probes, resources, every node, privileged namespace",
            not problems, "; ".join(problems))
    args = next(c for c in ds["spec"]["template"]["spec"]["containers"] if (c.get("args") or [None])[0] == "node")["args"]
    problems = []
    if flag(args, "--curator") != curator_url:
        problems.append(f"--curator {flag(args, '--curator')} != {curator_url}")
    if flag(args, "--curator-tls-pin") != curator_pin:
        problems.append(f"--curator-tls-pin {flag(args, '--curator-tls-pin')} != the curator cluster's pin {curator_pin}")
    if flag(args, "--trust-domain") != env["MAZU_CURATOR_TRUST_DOMAIN"] or \
            operator["spec"]["meshConfig"]["trustDomain"] != env["MAZU_CURATOR_TRUST_DOMAIN"]:
        problems.append("--trust-domain differs from the curator's or meshConfig.trustDomain")
    r.check("consistent node agent: curator URL, trust domain", not problems, "; ".join(problems))
    if derives_destinations(ds):
        problems = kubernetes_access_problems(ds, base)
        r.check(f"node agent {DESTINATIONS_FLAG}: a ClusterRole bound to its service account lists services, pods "
                "and endpointslices cluster-wide and grants nothing more; token and CA mounted into the agent only",
                not problems, "; ".join(problems))
        if spec_automounts(ds):
            r.fail("node agent token", "automountServiceAccountToken is on: every container of the pod gets the token")

        def access_variant(edit: Callable[[dict[str, Any], list[dict[str, Any]]], None]) -> list[str]:
            variant, docs = copy.deepcopy(ds), copy.deepcopy(base)
            edit(variant, docs)
            return kubernetes_access_problems(variant, docs)

        def no_binding(d: dict[str, Any], docs: list[dict[str, Any]]) -> None:
            docs[:] = [x for x in docs if x.get("kind") != "ClusterRoleBinding"]

        def no_slices(d: dict[str, Any], docs: list[dict[str, Any]]) -> None:
            for role in (x for x in docs if x.get("kind") == "ClusterRole"):
                role["rules"] = [rule for rule in role["rules"] if "endpointslices" not in rule.get("resources", [])]

        def secrets_too(d: dict[str, Any], docs: list[dict[str, Any]]) -> None:
            for role in (x for x in docs if x.get("kind") == "ClusterRole"):
                role["rules"][0]["resources"].append("secrets")

        def writes_too(d: dict[str, Any], docs: list[dict[str, Any]]) -> None:
            for role in (x for x in docs if x.get("kind") == "ClusterRole"):
                role["rules"][0]["verbs"].append("patch")

        def no_token(d: dict[str, Any], docs: list[dict[str, Any]]) -> None:
            agent = d["spec"]["template"]["spec"]["containers"][0]
            agent["volumeMounts"] = [m for m in agent["volumeMounts"] if m["mountPath"] != KUBE_SA_DIR]

        def no_config(d: dict[str, Any], docs: list[dict[str, Any]]) -> None:
            args = d["spec"]["template"]["spec"]["containers"][0]["args"]
            i = args.index("--validator-config")
            del args[i:i + 2]

        report_negatives(r, "node agent Kubernetes access", [
            ("DaemonSet whose service account is bound to no ClusterRole", access_variant(no_binding), "may not list"),
            ("ClusterRole without endpointslices", access_variant(no_slices), "endpointslices"),
            ("ClusterRole that also reads secrets", access_variant(secrets_too), "grants more"),
            ("ClusterRole that also patches", access_variant(writes_too), "grants more"),
            ("DaemonSet without the token volume mounted", access_variant(no_token), "token file"),
            (f"DaemonSet with {DESTINATIONS_FLAG} but no --validator-config", access_variant(no_config),
             "without --validator-config"),
        ])
    audience = env["MAZU_CURATOR_AUDIENCE"]
    if "mazu" not in template_pods:
        return
    problems = node_template_problems(template_pods["mazu"], ds, audience)
    r.check("node template \"mazu\": hostPath socket root with subPathExpr $(MAZU_POD_UID) everywhere (own socket "
            "only), wait-socket init container before istio-proxy as the socket owner, token volume (audience, "
            "path) mounted", not problems, "; ".join(problems))

    # Negative: variants both checks must refuse.
    negatives: list[tuple[str, list[str], str]] = []

    def ds_variant(edit: Callable[[dict[str, Any]], None]) -> list[str]:
        variant = copy.deepcopy(ds)
        edit(variant)
        return daemonset_problems(variant, namespaces)

    def agent_of(d: dict[str, Any]) -> dict[str, Any]:
        return d["spec"]["template"]["spec"]["containers"][0]

    def no_pods_mount(d: dict[str, Any]) -> None:
        agent_of(d)["volumeMounts"] = [m for m in agent_of(d)["volumeMounts"] if m["mountPath"] != KUBELET_PODS]

    def no_propagation(d: dict[str, Any]) -> None:
        for m in agent_of(d)["volumeMounts"]:
            m.pop("mountPropagation", None)

    def in_mazu_system(d: dict[str, Any]) -> None:
        d["metadata"]["namespace"] = "mazu-system"

    def privileged(d: dict[str, Any]) -> None:
        agent_of(d)["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}

    negatives += [
        ("DaemonSet without the kubelet pods-dir mount", ds_variant(no_pods_mount), "--pods-dir"),
        ("DaemonSet whose pods-dir mount lacks HostToContainer propagation", ds_variant(no_propagation), "HostToContainer"),
        ("DaemonSet in mazu-system (Pod Security restricted)", ds_variant(in_mazu_system), "refuses hostPath"),
        ("DaemonSet with SYS_ADMIN and no dropped capabilities", ds_variant(privileged), "capabilities"),
    ]

    def template_variant(edit: Callable[[dict[str, Any]], None]) -> list[str]:
        variant = copy.deepcopy(raw_templates["mazu"])
        edit(variant["spec"])
        return node_template_problems(injected_pod(variant), ds, audience)

    def no_sub_path_expr(spec: dict[str, Any]) -> None:
        for c in spec["containers"]:
            for m in c.get("volumeMounts", []):
                m.pop("subPathExpr", None)

    def no_wait(spec: dict[str, Any]) -> None:
        spec["initContainers"] = [c for c in spec["initContainers"] if (c.get("args") or [None])[0] != "wait-socket"]

    def native_wait(spec: dict[str, Any]) -> None:
        for c in spec["initContainers"]:
            c["restartPolicy"] = "Always"

    def token_not_mounted(spec: dict[str, Any]) -> None:
        for c in spec["initContainers"]:
            c["volumeMounts"] = [m for m in c.get("volumeMounts", []) if m["name"] != "mazu-token"]

    def emptydir_socket(spec: dict[str, Any]) -> None:
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "workload-socket"]

    negatives += [
        ("template whose istio-proxy mount lacks subPathExpr", template_variant(no_sub_path_expr), "subPathExpr"),
        ("template without the wait-socket init container", template_variant(no_wait), "wait-socket"),
        ("template whose wait container is a native sidecar", template_variant(native_wait), "native sidecar"),
        ("template that declares the token volume but mounts it nowhere", template_variant(token_not_mounted), "skips unused volumes"),
        ("template that keeps the sidecar template's emptyDir socket", template_variant(emptydir_socket), "hostPath"),
    ]
    report_negatives(r, "node agent", negatives)


def validator_checks(r: Report, base: list[dict[str, Any]], namespace_docs: list[dict[str, Any]],
                     raw_templates: dict[str, dict[str, Any]], plugins: list[dict[str, Any]],
                     samples: list[dict[str, Any]]) -> str | None:
    """The handshake validator as the manifests deliver it: the DaemonSet's
    --validator-config (ConfigMap mazu-validator), the module in the istio-proxy of both
    templates, the "mazu-pod" agent's --validator-config (ConfigMap mazu-validator of the
    pod's namespace, istio/namespace), and the cases those checks must refuse. Returns
    the mesh configuration JSON."""
    daemonsets = [d for d in base if d.get("kind") == "DaemonSet" and d["metadata"]["name"] == "mazu-agent"]
    if not daemonsets or "mazu" not in raw_templates or "mazu-pod" not in raw_templates:
        r.fail("validator", "no DaemonSet mazu-agent or no \"mazu\" and \"mazu-pod\" templates")
        return None
    ds = daemonsets[0]
    configmaps = {(d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
                  for d in base + namespace_docs if d.get("kind") == "ConfigMap"}
    module = validator_module_name()
    if module is None:
        r.fail("validator", "VALIDATOR_MODULE_NAME not found in agent/src/sds.rs")
        return None
    template, pod_template = raw_templates["mazu"], raw_templates["mazu-pod"]
    pod, pod_pod = injected_pod(template), injected_pod(pod_template)

    text, problems = daemonset_validator_config(ds, configmaps)
    r.check("validator DaemonSet: --validator-config names a key of a ConfigMap of the manifests mounted into the agent, "
            "not optional", text is not None, "; ".join(problems))
    if text is None:
        return None
    derived = derives_destinations(ds)
    problems = validator_config_problems(text, pod, plugins, samples, derived)
    r.check("validator config: JSON with every field set, registry_file in the directory where the \"mazu\" template "
            "mounts the pod's socket directory into istio-proxy, trust = both WasmPlugins' trust, no more lenient "
            "than the filters, destinations = the demo's Services and their service accounts"
            + (f" (derived by the agent, {DESTINATIONS_FLAG}; a hand-written demo host names the same accounts)"
               if derived else ""),
            not problems, "; ".join(problems))
    parser = ConfigChecker("mazu-validator")
    code, line = parser.run(text)
    r.check("validator config accepted by the module's own parser (`cargo run -p mazu-validator --example check_config`)",
            code == 0, line)
    if code == 0:
        print(f"     -> {line}")
    for name, injected in (("mazu", pod), ("mazu-pod", pod_pod)):
        problems = module_delivery_problems(injected, module)
        r.check(f"validator module: the \"{name}\" template's istio-proxy has {SEARCH_PATH_ENV} = the read-only mount "
                f"of an emptyDir into which a plain, least-privilege init container copies lib{module}.so",
                not problems, "; ".join(problems))
    proxy_spec = next(c for c in template["spec"]["containers"] if c["name"] == "istio-proxy")
    search = next(e["value"] for e in proxy_spec["env"] if e["name"] == SEARCH_PATH_ENV)
    module_volume = next(m["name"] for m in proxy_spec["volumeMounts"] if m["mountPath"] == search)
    problems = module_delivery_differences(pod_template, template, module_volume)
    r.check(f"validator module: the \"mazu-pod\" template delivers it exactly as \"mazu\" does (the same init "
            f"container, emptyDir {module_volume}, istio-proxy mount and {SEARCH_PATH_ENV})", not problems, "; ".join(problems))

    # The per-pod agent: its own namespace's ConfigMap, and the registry file it writes.
    def pod_agent_problems(t: dict[str, Any]) -> tuple[str | None, list[str]]:
        injected = injected_pod(t)
        spec = injected["spec"]
        found_text, found = validator_config_source(pod_agent_container(spec), spec, injected["metadata"]["namespace"], configmaps)
        return found_text, found + (registry_writer_problems(found_text, injected) if found_text is not None else [])

    ns_text, problems = pod_agent_problems(pod_template)
    r.check(f"validator per-pod agent (\"mazu-pod\"): --validator-config names a key of ConfigMap mazu-validator of the "
            f"pod's own namespace ({pod_pod['metadata']['namespace']}, istio/namespace) mounted into the agent, not "
            "optional (fail closed); the agent mounts, writable, the socket volume in which istio-proxy reads registry_file",
            ns_text is not None and not problems, "; ".join(problems))
    if ns_text is not None:
        problems = validator_config_problems(ns_text, pod_pod, plugins, samples)
        r.check("validator namespace config (istio/namespace, ConfigMap mazu-validator): JSON with every field set, "
                "registry_file in the directory where the \"mazu-pod\" template's istio-proxy mounts the socket emptyDir, "
                "trust = both WasmPlugins' trust, no more lenient than the filters, destinations = the demo's Services "
                "and their service accounts", not problems, "; ".join(problems))
        code, line = parser.run(ns_text)
        r.check("validator namespace config accepted by the module's own parser", code == 0, line)
        if code == 0:
            print(f"     -> {line}")

    # Negative: variants derived from the real manifests, each of which must be refused.
    negatives: list[tuple[str, list[str], str]] = []

    def template_variant(edit: Callable[[dict[str, Any]], None]) -> list[str]:
        variant = copy.deepcopy(template)
        edit(variant["spec"])
        return module_delivery_problems(injected_pod(variant), module)

    def proxy_of(spec: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in spec["containers"] if c["name"] == "istio-proxy")

    def copiers_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [c for c in spec["initContainers"] if any(m["name"] == module_volume for m in c.get("volumeMounts", []))]

    def unmounted(spec: dict[str, Any]) -> None:
        proxy_of(spec)["volumeMounts"] = [m for m in proxy_of(spec)["volumeMounts"] if m["name"] != module_volume]

    def elsewhere(spec: dict[str, Any]) -> None:
        for e in proxy_of(spec)["env"]:
            if e["name"] == SEARCH_PATH_ENV:
                e["value"] = search.rstrip("/") + "-elsewhere"

    def no_env(spec: dict[str, Any]) -> None:
        proxy_of(spec)["env"] = [e for e in proxy_of(spec)["env"] if e["name"] != SEARCH_PATH_ENV]

    def writable(spec: dict[str, Any]) -> None:
        for m in proxy_of(spec)["volumeMounts"]:
            if m["name"] == module_volume:
                m["readOnly"] = False

    def no_copier(spec: dict[str, Any]) -> None:
        spec["initContainers"] = [c for c in spec["initContainers"] if c not in copiers_of(spec)]

    def copier_as_root(spec: dict[str, Any]) -> None:
        for c in copiers_of(spec):
            c["securityContext"].update(runAsUser=0, runAsNonRoot=False)

    def copier_writable_root(spec: dict[str, Any]) -> None:
        for c in copiers_of(spec):
            c["securityContext"]["readOnlyRootFilesystem"] = False

    def copier_without_limits(spec: dict[str, Any]) -> None:
        for c in copiers_of(spec):
            c.pop("resources", None)

    def copier_native(spec: dict[str, Any]) -> None:
        for c in copiers_of(spec):
            c["restartPolicy"] = "Always"

    def other_file(spec: dict[str, Any]) -> None:
        for c in copiers_of(spec):
            c["command"] = [w.replace(f"lib{module}.so", "libvalidator.so") for w in c["command"]]

    def host_path(spec: dict[str, Any]) -> None:
        for v in spec["volumes"]:
            if v["name"] == module_volume:
                v.pop("emptyDir", None)
                v["hostPath"] = {"path": "/opt/mazu/modules", "type": "Directory"}

    negatives += [
        (f"template whose istio-proxy does not mount the search path ({search})", template_variant(unmounted),
         "is not where a volume is mounted"),
        (f"template whose {SEARCH_PATH_ENV} is not the module mount", template_variant(elsewhere),
         "is not where a volume is mounted"),
        (f"template without {SEARCH_PATH_ENV}", template_variant(no_env), f"has no {SEARCH_PATH_ENV}"),
        ("template whose module volume is writable by istio-proxy", template_variant(writable), "writable"),
        ("template without the init container that copies the module", template_variant(no_copier), "no init container writes"),
        ("template whose module copier runs as root", template_variant(copier_as_root), "runs as root"),
        ("template whose module copier has a writable root file system", template_variant(copier_writable_root), "least privilege"),
        ("template whose module copier has no resources", template_variant(copier_without_limits), "resources"),
        ("template whose module copier is a native sidecar", template_variant(copier_native), "plain init container"),
        (f"template that copies another file than lib{module}.so", template_variant(other_file), "does not copy"),
        ("template whose module volume is a hostPath", template_variant(host_path), "not an emptyDir"),
    ]

    cfg = json.loads(text)
    socket_dir = posixpath.dirname(cfg["registry_file"])

    def config_variant(edit: Callable[[dict[str, Any]], None], source: dict[str, Any] = cfg,
                       target: dict[str, Any] = pod, derived: bool = False) -> list[str]:
        variant = copy.deepcopy(source)
        edit(variant)
        return validator_config_problems(json.dumps(variant), target, plugins, samples, derived)

    demo_hosts = sample_destinations(samples, cfg["trust"]["trust_domain"])

    def demo_destinations(c: dict[str, Any]) -> None:
        c["destinations"] = {host: sorted(ids) for host, ids in demo_hosts.items()}

    def outside(c: dict[str, Any]) -> None:
        c["registry_file"] = "/var/run/mazu/" + posixpath.basename(c["registry_file"])

    def below(c: dict[str, Any]) -> None:
        c["registry_file"] = f"{socket_dir}/registry/{posixpath.basename(c['registry_file'])}"

    def over_socket(c: dict[str, Any]) -> None:
        c["registry_file"] = f"{socket_dir}/socket"

    def other_audience(c: dict[str, Any]) -> None:
        c["trust"]["audience"] += "-other"

    def other_jwks(c: dict[str, Any]) -> None:
        c["trust"]["issuers"][0]["jwks"]["keys"][0]["kid"] = "another-key"

    def no_destinations(c: dict[str, Any]) -> None:
        c["destinations"] = {}

    def wrong_account(c: dict[str, Any]) -> None:
        demo_destinations(c)
        for host in c["destinations"]:
            c["destinations"][host] = [i.rpartition("/sa/")[0] + "/sa/impostor" for i in c["destinations"][host]]

    def lenient(c: dict[str, Any]) -> None:
        c["max_registry_age_ms"] = max(p["spec"]["pluginConfig"].get("max_staleness_secs", 0) for p in plugins) * 1000 + 1

    def defaults_only(c: dict[str, Any]) -> None:
        del c["recheck_interval_ms"]

    negatives += [
        ("config whose registry_file is outside the socket directory", config_variant(outside), "is not in the directory"),
        ("config whose registry_file is in a subdirectory of the socket directory", config_variant(below), "is not in the directory"),
        ("config whose registry_file is the socket", config_variant(over_socket), "SDS socket"),
        ("config whose trust has another audience than the WasmPlugins'", config_variant(other_audience), "trust differs"),
        ("config whose trust has another JWKS than the WasmPlugins'", config_variant(other_jwks), "trust differs"),
        (f"config without the demo's destinations (and no {DESTINATIONS_FLAG})", config_variant(no_destinations),
         "destinations["),
        ("config whose destination names another service account", config_variant(wrong_account), "destinations["),
        (f"config whose hand-written destination names another service account (it wins over {DESTINATIONS_FLAG})",
         config_variant(wrong_account, derived=True), "destinations["),
        ("config more lenient on registry age than the filters", config_variant(lenient), "more lenient"),
        ("config that leaves a field to its default", config_variant(defaults_only), "fields not set"),
    ]
    if ns_text is not None:
        ns_cfg = json.loads(ns_text)
        negatives += [
            ("namespace config whose trust has another JWKS than the WasmPlugins'",
             config_variant(other_jwks, ns_cfg, pod_pod), "trust differs"),
            ("namespace config whose registry_file is outside the socket emptyDir",
             config_variant(outside, ns_cfg, pod_pod), "is not in the directory"),
            ("namespace config without the demo's destinations", config_variant(no_destinations, ns_cfg, pod_pod),
             "destinations["),
        ]

    # The same mistakes in the node agent's DaemonSet and in the per-pod agent: each edit
    # takes the agent container and its pod spec.
    def ds_variant(edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> list[str]:
        variant = copy.deepcopy(ds)
        edit(node_agent_container(variant), variant["spec"]["template"]["spec"])
        return daemonset_validator_config(variant, configmaps)[1]

    def pod_variant(edit: Callable[[dict[str, Any]], None]) -> list[str]:
        variant = copy.deepcopy(pod_template)
        edit(variant["spec"])
        return (module_delivery_problems(injected_pod(variant), module)
                + module_delivery_differences(variant, template, module_volume) + pod_agent_problems(variant)[1])

    def on_pod_agent(edit: Callable[[dict[str, Any], dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        return lambda spec: edit(pod_agent_container(spec), spec)

    def config_path_of(agent: dict[str, Any]) -> str:
        return flag(agent["args"], "--validator-config") or ""

    def no_flag(agent: dict[str, Any], spec: dict[str, Any]) -> None:
        i = agent["args"].index("--validator-config")
        del agent["args"][i:i + 2]

    def unmounted_path(agent: dict[str, Any], spec: dict[str, Any]) -> None:
        agent["args"][agent["args"].index("--validator-config") + 1] = \
            "/etc/mazu/elsewhere/" + posixpath.basename(config_path_of(agent))

    def missing_key(agent: dict[str, Any], spec: dict[str, Any]) -> None:
        agent["args"][agent["args"].index("--validator-config") + 1] = \
            posixpath.dirname(config_path_of(agent)) + "/other.json"

    def unknown_configmap(agent: dict[str, Any], spec: dict[str, Any]) -> None:
        for v in spec["volumes"]:
            if "configMap" in v:
                v["configMap"]["name"] += "-missing"

    def optional_configmap(agent: dict[str, Any], spec: dict[str, Any]) -> None:
        for v in spec["volumes"]:
            if "configMap" in v:
                v["configMap"]["optional"] = True

    agent_edits = [
        ("without --validator-config", no_flag, "no --validator-config"),
        ("whose --validator-config is not in a mounted volume", unmounted_path, "not in a volume mounted"),
        ("whose --validator-config names a key the ConfigMap lacks", missing_key, "has no key"),
        ("that mounts a ConfigMap the manifests lack", unknown_configmap, "not part of the manifests"),
        ("whose validator ConfigMap is optional", optional_configmap, "is optional"),
    ]
    negatives += [(f"DaemonSet {what}", ds_variant(edit), expect) for what, edit, expect in agent_edits]
    negatives += [(f"\"mazu-pod\" template {what}", pod_variant(on_pod_agent(edit)), expect)
                  for what, edit, expect in agent_edits]

    def other_image(spec: dict[str, Any]) -> None:
        for c in copiers_of(spec):
            c["image"] += "-other"

    def socket_mounts_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
        return [m for m in pod_agent_container(spec)["volumeMounts"] if m["name"] == "workload-socket"]

    def socket_read_only(spec: dict[str, Any]) -> None:
        for m in socket_mounts_of(spec):
            m["readOnly"] = True

    def socket_elsewhere(spec: dict[str, Any]) -> None:
        for m in socket_mounts_of(spec):
            m["mountPath"] = "/var/run/mazu-agent-socket"

    negatives += [
        ("\"mazu-pod\" template whose istio-proxy does not mount the module volume", pod_variant(unmounted),
         "is not where a volume is mounted"),
        ("\"mazu-pod\" template whose module volume is writable by istio-proxy", pod_variant(writable), "writable"),
        ("\"mazu-pod\" template without the init container that copies the module", pod_variant(no_copier),
         "no init container writes"),
        ("\"mazu-pod\" template whose module copier differs from \"mazu\"'s (another image)", pod_variant(other_image),
         "differ from the \"mazu\" template's"),
        ("\"mazu-pod\" template whose agent mounts the socket emptyDir read-only", pod_variant(socket_read_only),
         "cannot write registry_file"),
        ("\"mazu-pod\" template whose agent mounts the socket emptyDir elsewhere than istio-proxy",
         pod_variant(socket_elsewhere), "where istio-proxy does not read it"),
    ]
    report_negatives(r, "validator", negatives)

    # Negative: what the module's own parser refuses (Envoy would refuse the TLS context,
    # and the agent would not start).
    broken: list[tuple[str, dict[str, Any], str]] = []
    relative = copy.deepcopy(cfg)
    relative["registry_file"] = posixpath.basename(cfg["registry_file"])
    broken.append(("a relative registry_file", relative, "absolute"))
    young = copy.deepcopy(cfg)
    young["max_registry_age_ms"] = 10
    broken.append(("max_registry_age_ms 10", young, "max_registry_age_ms"))
    slow = copy.deepcopy(cfg)
    slow["recheck_interval_ms"] = cfg["max_registry_age_ms"] + 1
    broken.append(("recheck_interval_ms above max_registry_age_ms", slow, "recheck_interval_ms"))
    typo = copy.deepcopy(cfg)
    typo["destinatons"] = typo.pop("destinations")
    broken.append(("misspelled field destinatons", typo, "unknown field"))
    foreign = copy.deepcopy(cfg)
    # (The mesh configuration may list none: its agent derives them.)
    foreign["destinations"] = {host: ["spiffe://other.example/ns/x/sa/y"]
                               for host in foreign["destinations"] or {"checkout.shop.svc.cluster.local": []}}
    broken.append(("a destination outside the trust domain", foreign, "trust domain"))
    no_trust = copy.deepcopy(cfg)
    del no_trust["trust"]
    broken.append(("no trust", no_trust, "trust"))
    no_jwks = copy.deepcopy(cfg)
    no_jwks["trust"]["issuers"][0]["jwks"] = {"keys": []}
    broken.append(("an issuer with an empty JWKS", no_jwks, "jwks"))
    for what, variant, expect in broken:
        code, line = parser.run(json.dumps(variant))
        r.check(f"negative validator config rejected by the module's parser: {what}", code == 1 and expect in line,
                f"exit {code}: {line!r} (expected a refusal mentioning {expect!r})")
        if code == 1:
            print(f"     -> {line}")
    return text


def main() -> int:
    r = Report()
    crd_path = Path(os.environ.get("MAZU_ISTIO_CRDS", REPO.parent / "shared" / "istio-crds" / "istio-crds.gen.yaml"))
    envoy = Path(os.environ.get("MAZU_ENVOY", REPO / ".tools" / "envoy" / "bin" / "envoy"))
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target_dir.is_absolute():
        target_dir = REPO / target_dir
    wasm = Path(os.environ.get("MAZU_FILTER_WASM", target_dir / "wasm32-wasip1" / "wasm" / "mazu_filter.wasm"))

    # --- parse
    docs_by_file: dict[Path, list[dict[str, Any]]] = {}
    for path in sorted(ISTIO.rglob("*.yaml")):
        if "local" in path.relative_to(ISTIO).parts[:2]:
            continue  # istio/overlays/local: generated by the demo, not part of the tree
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
            if not docs:
                raise ValueError("no YAML document")
            docs_by_file[path] = [d for d in docs if isinstance(d, dict)]
            r.ok(f"parse {rel(path)}", f"{len(docs)} document(s)")
        except (yaml.YAMLError, ValueError) as e:
            r.fail(f"parse {rel(path)}", str(e))

    # --- render
    rendered: dict[str, list[dict[str, Any]]] = {}
    for k in KUSTOMIZATIONS:
        try:
            rendered[k] = kustomize_lite.build(str(ISTIO / k))
            r.ok(f"render istio/{k}", f"{len(rendered[k])} resources")
        except (kustomize_lite.KustomizeError, OSError, yaml.YAMLError) as e:
            r.fail(f"render istio/{k}", str(e))

    # --- schemas
    if not crd_path.is_file():
        r.fail("crd schemas", f"{crd_path} is missing: the Istio CRD bundle is expected at "
               "../shared/istio-crds/istio-crds.gen.yaml beside the repository (or set MAZU_ISTIO_CRDS)")
        crds = {}
    else:
        crds = load_crd_validators(crd_path)
        r.ok("crd schemas loaded", f"{len(crds)} kinds from {crd_path.name}")
    validator = Validator(crds)

    to_validate: list[tuple[str, dict[str, Any]]] = []
    for k, docs in rendered.items():
        to_validate += [(f"istio/{k}", d) for d in docs]
    for path in sorted((ISTIO / "demo" / "samples").glob("*.yaml")):
        to_validate += [(rel(path), d) for d in docs_by_file.get(path, [])]
    for source, doc in to_validate:
        label = "crd " if validator.is_istio(doc) else "core"
        if label == "crd " and not crds:
            r.fail(f"crd  {source} {describe(doc)}", "no CRD schemas loaded")
            continue
        errs = validator.errors(doc)
        if errs:
            r.fail(f"{label} {source} {describe(doc)}", "; ".join(errs))
        else:
            r.ok(f"{label} {source} {describe(doc)}")

    # --- the injection templates (istio/install/istio-mazu.yaml) as Pods
    operator_path = ISTIO / "install" / "istio-mazu.yaml"
    operator = (docs_by_file.get(operator_path) or [{}])[0]
    raw_templates: dict[str, dict[str, Any]] = {}
    template_pods: dict[str, dict[str, Any]] = {}
    try:
        assert operator.get("kind") == "IstioOperator", "not an IstioOperator"
        templates = operator["spec"]["values"]["sidecarInjectorWebhook"]["templates"]
        for name in ("mazu", "mazu-pod"):
            raw_templates[name] = yaml.safe_load(templates[name])
            pod = injected_pod(raw_templates[name])
            template_pods[name] = pod
            errs = validator.errors(pod)
            mounts = {m["name"] for c in all_containers(pod) for m in c.get("volumeMounts", [])}
            volumes = {v["name"] for v in pod["spec"]["volumes"]}
            if mounts - volumes:
                errs.append(f"mounts without a volume: {sorted(mounts - volumes)}")
            label = f"core istio/install/istio-mazu.yaml: a Pod injected with templates sidecar,{name}"
            if errs:
                r.fail(label, "; ".join(errs))
            else:
                r.ok(label)
    except (AssertionError, KeyError, TypeError, yaml.YAMLError) as e:
        r.fail("istio/install/istio-mazu.yaml", f"no usable injection templates \"mazu\" and \"mazu-pod\": {e!r}")

    if validator.unevaluated_cel:
        print(f"note {len(validator.unevaluated_cel)} CEL rule(s) of these CRDs are not evaluated offline: "
              + "; ".join(sorted(validator.unevaluated_cel)), flush=True)

    # --- consistency
    base = rendered.get("base", [])
    validator_json: str | None = None
    samples = [d for p, ds in docs_by_file.items() if "samples" in p.parts for d in ds]
    def find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [d for d in base if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    plugins = find("WasmPlugin")
    envoy_filters = find("EnvoyFilter")
    try:
        service = find("Service", "mazu-curator")[0]
        deployment = find("Deployment", "mazu-curator")[0]
        issuers_cm = find("ConfigMap", "mazu-curator-issuers")[0]
        env = {}
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                cm = find("ConfigMap", ref["name"])[0]
                env[e["name"]] = cm["data"][ref["key"]]
            else:
                env[e["name"]] = e.get("value")
        port = service["spec"]["ports"][0]["port"]
        fqdn = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
        cluster = CURATOR_CLUSTER
        issuer_url, _, issuer_rest = env["MAZU_CURATOR_ISSUERS"].partition("=")
        jwks_file, _, issuer_scope = issuer_rest.rpartition(";namespaces=")
        r.check("consistent curator issuer has an explicit namespace scope (ISSUER=JWKS;namespaces=SCOPE)",
                bool(jwks_file) and bool(issuer_scope), f"MAZU_CURATOR_ISSUERS={env['MAZU_CURATOR_ISSUERS']!r}")
        curator_audience = env["MAZU_CURATOR_AUDIENCE"] or ""
        r.check("consistent curator audience is deployment-unique (not the shared \"mazu\")",
                curator_audience.lower() not in ("", "mazu", "mazu:") and curator_audience != issuer_url,
                f"MAZU_CURATOR_AUDIENCE={curator_audience!r}")
        cm_jwks = json.loads(issuers_cm["data"][Path(jwks_file).name])
        listen_port = int(env["MAZU_CURATOR_LISTEN"].rpartition(":")[2])
        container_ports = {p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
        r.check("consistent curator Service targets the listen port",
                container_ports.get(service["spec"]["ports"][0]["targetPort"]) == listen_port,
                f"targetPort {service['spec']['ports'][0]['targetPort']} -> {container_ports}, listen {listen_port}")
        added = [cp["patch"]["value"] for ef in envoy_filters for cp in ef["spec"]["configPatches"]
                 if cp["patch"]["operation"] == "ADD" and cp["patch"]["value"].get("name") == CURATOR_CLUSTER]
        curator_pin = None
        problems = []
        if len(added) != 1:
            problems.append(f"{len(added)} EnvoyFilter patches add the cluster {CURATOR_CLUSTER}")
        else:
            socket_address = added[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            if (socket_address["address"], socket_address["port_value"]) != (fqdn, port):
                problems.append(f"it points at {socket_address}, not the Service {fqdn}:{port}")
            pins = added[0]["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"].get("verify_certificate_spki") or []
            if len(pins) != 1:
                problems.append(f"{len(pins)} pins (want the curator's one)")
            else:
                curator_pin = pins[0]
        r.check(f"consistent curator cluster {CURATOR_CLUSTER}: the Service's address and port, one TLS pin",
                not problems, "; ".join(problems))
        r.check("consistent WasmPlugins: two, inbound (SERVER) and outbound (CLIENT)",
                sorted((p["spec"]["pluginConfig"]["direction"], p["spec"]["match"][0]["mode"]) for p in plugins)
                == [("inbound", "SERVER"), ("outbound", "CLIENT")],
                f"{[(p['metadata']['name'], p['spec'].get('match')) for p in plugins]}")
        for p in plugins:
            pc, spec, n = p["spec"]["pluginConfig"], p["spec"], p["metadata"]["name"]
            problems = []
            for field, want in (("type", "NETWORK"), ("phase", "AUTHN"), ("failStrategy", "FAIL_CLOSE")):
                if spec.get(field) != want:
                    problems.append(f"{field} is {spec.get(field)!r}, want {want}")
            if pc["curator"]["cluster"] != cluster:
                problems.append(f"curator.cluster {pc['curator']['cluster']!r} != {cluster!r} (from the Service)")
            if pc["curator"]["authority"] != fqdn:
                problems.append(f"curator.authority {pc['curator']['authority']!r} != {fqdn!r}")
            if pc["trust"]["trust_domain"] != env["MAZU_CURATOR_TRUST_DOMAIN"]:
                problems.append("trust_domain differs from the curator's")
            if pc["trust"]["audience"] != env["MAZU_CURATOR_AUDIENCE"]:
                problems.append("audience differs from the curator's")
            if [i["issuer"] for i in pc["trust"]["issuers"]] != [issuer_url]:
                problems.append("issuers differ from the curator's")
            elif pc["trust"]["issuers"][0]["jwks"] != cm_jwks:
                problems.append("JWKS differs from the curator's (ConfigMap mazu-curator-issuers)")
            elif "+".join(sorted(pc["trust"]["issuers"][0].get("namespaces") or [])) != \
                    "+".join(sorted(issuer_scope.split("+"))):
                problems.append(f"issuer namespaces {pc['trust']['issuers'][0].get('namespaces')!r} differ from "
                                f"the curator's scope {issuer_scope!r}")
            r.check(f"consistent WasmPlugin {n}: {spec.get('type')} {spec.get('phase')} {spec.get('failStrategy')}, "
                    f"curator {pc['curator']['cluster']}, trust = curator's", not problems, "; ".join(problems))
        # The per-pod agent (`mazu-agent run`) of the "mazu-pod" template; a template
        # without one is reported by the validator checks ("no agent container").
        pod_agent = pod_agent_container(template_pods["mazu-pod"]["spec"]) if "mazu-pod" in template_pods else None
        if pod_agent is not None:
            template_pod = template_pods["mazu-pod"]
            agent = pod_agent
            args = agent["args"]
            token_vol = next(v for v in template_pod["spec"]["volumes"] if v["name"] == "mazu-token")
            audience = token_vol["projected"]["sources"][0]["serviceAccountToken"]["audience"]
            mount = next(m for m in agent["volumeMounts"] if m["name"] == "mazu-token")["mountPath"]
            token_path = token_vol["projected"]["sources"][0]["serviceAccountToken"]["path"]
            problems = []
            if flag(args, "--curator") != f"https://{fqdn}:{port}":
                problems.append(f"--curator {flag(args, '--curator')} != https://{fqdn}:{port}")
            if flag(args, "--curator-tls-pin") != curator_pin:
                problems.append(f"--curator-tls-pin {flag(args, '--curator-tls-pin')} != the curator cluster's pin {curator_pin}")
            if flag(args, "--trust-domain") != env["MAZU_CURATOR_TRUST_DOMAIN"]:
                problems.append("--trust-domain differs from the curator's")
            if audience != env["MAZU_CURATOR_AUDIENCE"]:
                problems.append(f"projected token audience {audience!r} != curator audience")
            if flag(args, "--token-file") != f"{mount}/{token_path}":
                problems.append(f"--token-file {flag(args, '--token-file')} is not the projected token {mount}/{token_path}")
            if flag(args, "--sds-socket") != "/var/run/secrets/workload-spiffe-uds/socket":
                problems.append("--sds-socket is not Istio's workload-spiffe-uds socket")
            if agent.get("restartPolicy") != "Always" or "startupProbe" not in agent:
                problems.append("the agent must be a native sidecar with a startupProbe (it must start before istio-proxy)")
            if operator["spec"]["meshConfig"]["trustDomain"] != env["MAZU_CURATOR_TRUST_DOMAIN"]:
                problems.append("meshConfig.trustDomain differs")
            r.check("consistent per-pod agent template \"mazu-pod\": curator URL, token audience/path, trust domain, SDS socket",
                    not problems, "; ".join(problems))
        parties = {"curator": ([w.partition("=")[2].partition(";")[0]
                                for w in (env.get("MAZU_CURATOR_WITNESSES") or "").split(",") if w],
                               env.get("MAZU_CURATOR_WITNESS_QUORUM"))}
        for d in base:
            if d.get("kind") == "DaemonSet" and d["metadata"]["name"] == "mazu-agent":
                ds_args = node_agent_container(d)["args"]
                parties["node agent"] = (flag_values(ds_args, "--witness"), flag(ds_args, "--witness-quorum"))
        if pod_agent is not None:
            parties["per-pod agent (\"mazu-pod\")"] = (flag_values(pod_agent["args"], "--witness"),
                                                         flag(pod_agent["args"], "--witness-quorum"))
        for p in plugins:
            parties[f"WasmPlugin {p['metadata']['name']}"] = (
                list(p["spec"]["pluginConfig"]["curator"].get("witnesses") or []),
                str(p["spec"]["pluginConfig"]["curator"].get("witness_quorum") or "") or None)
        problems = witness_problems(parties)
        r.check(f"consistent witnesses and quorum: {', '.join(parties)}", not problems, "; ".join(problems))
        negatives = []
        for name in list(parties)[1:]:
            variant = dict(parties)
            variant[name] = ([], None)
            negatives.append((f"{name} without witnesses", witness_problems(variant), name))
            variant[name] = (parties[name][0][:1], parties[name][1])
            negatives.append((f"{name} with one witness fewer", witness_problems(variant), name))
        report_negatives(r, "witness", negatives)
        node_checks(r, base, template_pods, raw_templates, operator, env, f"https://{fqdn}:{port}", curator_pin)
        validator_json = validator_checks(r, base, rendered.get("namespace", []), raw_templates, plugins, samples)
        selectors = {json.dumps(p["spec"]["selector"]["matchLabels"]) for p in plugins} | {
            json.dumps(e["spec"]["workloadSelector"]["labels"]) for e in envoy_filters}
        r.check("consistent WasmPlugins and EnvoyFilters select the same pods", len(selectors) == 1, f"{selectors}")
        sample_pods = [d["spec"]["template"] for p, ds in docs_by_file.items() if "samples" in p.parts
                       for d in ds if d.get("kind") == "Deployment"]
        wanted = json.loads(next(iter(selectors)))
        bad = [t["metadata"]["labels"].get("app") for t in sample_pods
               if any(t["metadata"]["labels"].get(k) != v for k, v in wanted.items())]
        r.check("consistent demo workloads carry the Mazu label", not bad, f"missing on {bad}")
        bad = []
        for t in sample_pods:
            notes = t["metadata"].get("annotations", {})
            chosen = [x.strip() for x in notes.get("inject.istio.io/templates", "sidecar").split(",")]
            if any(x.startswith("mazu") for x in chosen) and (
                    not set(chosen) <= {"sidecar"} | set(raw_templates)
                    or notes.get("sidecar.istio.io/nativeSidecar") != "false"):
                bad.append(t["metadata"]["labels"].get("app"))
        r.check("consistent demo workloads name existing Mazu templates, with nativeSidecar \"false\"", not bad, f"wrong on {bad}")
    except (IndexError, KeyError, StopIteration, ValueError) as e:
        r.fail("consistent", f"could not read the base resources: {e!r}")

    # --- pluginConfig through the filter's parser
    checker = ConfigChecker()
    good_configs = []
    for p in plugins:
        name = f"plugin WasmPlugin {p['metadata']['name']}: pluginConfig accepted by the filter's parser"
        try:
            config = plugin_config_json(p)
        except ValueError as e:
            r.fail(name, str(e))
            continue
        code, line = checker.run(config)
        if code == 0:
            r.ok(name, line)
            good_configs.append((p, config))
        else:
            r.fail(name, line)
    if good_configs:
        base_plugin, base_json = next(((p, c) for p, c in good_configs if p["spec"]["pluginConfig"]["direction"] == "inbound"), good_configs[0])
        base_cfg = json.loads(base_json)
        broken: list[tuple[str, dict[str, Any], str]] = []
        typo = copy.deepcopy(base_cfg)
        typo["curator"]["clusetr"] = typo["curator"].pop("cluster")
        broken.append(("misspelled field curator.clusetr", typo, "unknown field"))
        fast = copy.deepcopy(base_cfg)
        fast["curator"]["refresh_interval_ms"] = 5
        broken.append(("curator.refresh_interval_ms 5", fast, "refresh_interval_ms"))
        park_out = copy.deepcopy(base_cfg)
        park_out["direction"] = "outbound"
        broken.append(("before_registry park on outbound", park_out, "before_registry"))
        no_jwks = copy.deepcopy(base_cfg)
        no_jwks["trust"]["issuers"][0]["jwks"] = {"keys": []}
        broken.append(("issuer with an empty JWKS", no_jwks, "jwks"))
        for what, cfg, expect in broken:
            code, line = checker.run(json.dumps(cfg))
            r.check(f"negative pluginConfig rejected by the parser: {what}", code == 1 and expect in line,
                    f"exit {code}: {line!r} (expected a refusal mentioning {expect!r})")
            if code == 1:
                print(f"     -> {line}")

    # --- Envoy
    fixture_path = HERE / "fixtures" / "sidecar-envoy.yaml"
    if not envoy.is_file():
        r.fail("envoy", f"{envoy} is missing: run `bash scripts/install-envoy.sh`")
    elif not wasm.is_file():
        r.fail("envoy", f"{wasm} is missing: run `just wasm-filter` (or set MAZU_FILTER_WASM)")
    else:
        fixture = yaml.safe_load(fixture_path.read_text())
        ok, why = envoy_validate(envoy, fixture)
        r.check(f"envoy validate {rel(fixture_path)} as is (the baseline)", ok, why)
        patched = copy.deepcopy(fixture)
        try:
            applied = apply_envoy_filters(patched, envoy_filters)
            render_wasm_plugins(patched, plugins, wasm)
            r.ok("envoy EnvoyFilter MERGE and ADD patches applied", f"{len(applied)} targets: {', '.join(applied)}")
        except (PatchError, KeyError) as e:
            r.fail("envoy EnvoyFilter MERGE and ADD patches applied", str(e))
        else:
            ok, why = envoy_validate(envoy, patched)
            r.check("envoy validate: fixture + EnvoyFilters + both WasmPlugins (real .wasm, on_configure run)", ok, why)
            # What the patches must have done, and not done.
            inbound = next(l for l in patched["static_resources"]["listeners"] if l["name"] == "virtualInbound")
            problems = []
            for chain in inbound["filter_chains"]:
                tls = find_tls(chain)
                proxies = [f["typed_config"] for f in chain.get("filters", []) if f["name"] == "envoy.filters.network.tcp_proxy"]
                if chain.get("filter_chain_match", {}).get("transport_protocol") == "tls":
                    cvc = tls["common_tls_context"]["combined_validation_context"]
                    # The pins (ROOTCA) are enforced only without ACCEPT_UNTRUSTED (which
                    # also switches SAN matchers and pins off) and without a CA.
                    if cvc["default_validation_context"]:
                        problems.append(f"{chain['name']}: the default validation context is not empty: {cvc['default_validation_context']}")
                    if cvc.get("validation_context_sds_secret_config", {}).get("name") != "ROOTCA":
                        problems.append(f"{chain['name']}: ROOTCA lost")
                    if not tls.get("require_client_certificate"):
                        problems.append(f"{chain['name']}: client certificate no longer required")
                    if chain["filters"][0]["name"] != "istio-system.mazu-inbound":
                        problems.append(f"{chain['name']}: the Mazu filter is not first")
                    for proxy in proxies:
                        if proxy.get("upstream_connect_mode") != "ON_DOWNSTREAM_TLS_HANDSHAKE" or proxy.get("max_early_data_bytes") != 0:
                            problems.append(f"{chain['name']}: tcp_proxy connects to the app before the handshake")
                elif "transport_socket" in chain:
                    problems.append(f"{chain['name']}: a plaintext chain got a transport socket")
                elif any("upstream_connect_mode" in p for p in proxies):
                    problems.append(f"{chain['name']}: a plaintext chain's tcp_proxy was patched")
            r.check("envoy inbound: every mTLS chain keeps ROOTCA alone (no ACCEPT_UNTRUSTED) + client cert required + Mazu filter first + tcp_proxy waits for the handshake; plaintext chains untouched",
                    not problems, "; ".join(problems))
            problems = []
            for cluster in patched["static_resources"]["clusters"]:
                name = cluster["name"]
                if name.startswith("outbound|"):
                    m = cluster["transport_socket_matches"]
                    ctx = m[0]["transport_socket"]["typed_config"]["common_tls_context"]
                    if m[0]["name"] != "tlsMode-istio" or ctx.get("validation_context_sds_secret_config", {}).get("name") != "ROOTCA":
                        problems.append(f"{name}: tlsMode-istio does not validate with ROOTCA alone")
                    if "combined_validation_context" in ctx:
                        problems.append(f"{name}: istiod's SAN matchers (refused without a CA) still in place")
                    if "validation_context" in ctx:
                        problems.append(f"{name}: an inline validation context (ACCEPT_UNTRUSTED?) is set")
                    if [s["name"] for s in ctx.get("tls_certificate_sds_secret_configs", [])] != ["default"]:
                        problems.append(f"{name}: the SDS certificate 'default' is not presented exactly once")
                    if m[1]["transport_socket"]["name"] != "envoy.transport_sockets.raw_buffer" or "transport_socket" in cluster:
                        problems.append(f"{name}: plaintext match or cluster transport socket changed")
                if name in ("sds-grpc", "xds-grpc") and "transport_socket" in cluster:
                    problems.append(f"{name}: a bootstrap cluster was patched")
            r.check("envoy outbound: tlsMode-istio presents SDS 'default' once and validates the server with ROOTCA's pins alone; bootstrap clusters untouched",
                    not problems, "; ".join(problems))
            curator_clusters = [c for c in patched["static_resources"]["clusters"] if c["name"] == CURATOR_CLUSTER]
            problems = []
            if len(curator_clusters) != 1:
                problems.append(f"{len(curator_clusters)} clusters named {CURATOR_CLUSTER}")
            for cluster in curator_clusters:
                vc = cluster["transport_socket"]["typed_config"]["common_tls_context"].get("validation_context", {})
                if not vc.get("verify_certificate_spki"):
                    problems.append("no verify_certificate_spki pin")
                if vc.get("trust_chain_verification") == "ACCEPT_UNTRUSTED":
                    problems.append("ACCEPT_UNTRUSTED (which switches the pin off) reached the curator cluster")
            r.check(f"envoy curator cluster {CURATOR_CLUSTER}: added once, TLS pinned to the curator's key, untouched by the outbound MERGE",
                    not problems, "; ".join(problems))

            # The handshake validator in real Envoy: the patched sidecar with ROOTCA as the
            # agent serves it (the module, configured with ConfigMap mazu-validator's JSON),
            # the module laid out as the template's init container does.
            module = validator_module_name()
            module_path = Path(os.environ.get("MAZU_VALIDATOR_MODULE", target_dir / "debug" / f"lib{module}.so"))
            build = None
            if "MAZU_VALIDATOR_MODULE" not in os.environ:
                build = subprocess.run(["cargo", "build", "-q", "-p", "mazu-validator", "--lib"], cwd=REPO,
                                       capture_output=True, text=True, timeout=1800)
            if validator_json is None or module is None:
                r.fail("envoy validator", "no validator configuration (see the validator checks above)")
            elif build is not None and build.returncode != 0:
                r.fail("envoy validator", f"`cargo build -p mazu-validator` failed: {build.stderr[-400:]}")
            elif not module_path.is_file():
                r.fail("envoy validator", f"{module_path} is missing: run `cargo build -p mazu-validator` "
                       "(or set MAZU_VALIDATOR_MODULE)")
            else:
                with tempfile.TemporaryDirectory(prefix="mazu-modules-") as modules, \
                        tempfile.TemporaryDirectory(prefix="mazu-empty-") as empty:
                    shutil.copyfile(module_path, Path(modules) / f"lib{module}.so")
                    with_module = dict(os.environ, **{SEARCH_PATH_ENV: modules})
                    without = {k: v for k, v in os.environ.items() if k not in (SEARCH_PATH_ENV, "LD_LIBRARY_PATH")}
                    cfg = copy.deepcopy(patched)
                    replaced = with_rootca_inline(cfg, module_rootca(module, validator_json))
                    ok, why = envoy_validate(envoy, cfg, env=with_module, cwd=empty)
                    r.check(f"envoy validate: the patched sidecar with ROOTCA = lib{module}.so configured by ConfigMap "
                            f"mazu-validator, found through {SEARCH_PATH_ENV} ({replaced} TLS contexts)",
                            ok and replaced > 0, why or f"{replaced} TLS contexts")
                    ok, why = envoy_validate(envoy, cfg, env=without, cwd=empty)
                    r.check(f"negative envoy refuses that sidecar when {SEARCH_PATH_ENV} does not lead to the module "
                            "(fail closed)", not ok, "Envoy accepted it")
                    if not ok:
                        print(f"     -> {why[:300]}")
                    bad = json.loads(validator_json)
                    bad["max_registry_age_ms"] = 10
                    cfg = copy.deepcopy(patched)
                    with_rootca_inline(cfg, module_rootca(module, json.dumps(bad)))
                    ok, why = envoy_validate(envoy, cfg, env=with_module, cwd=empty)
                    r.check("negative envoy refuses a validator configuration the module refuses", not ok, "Envoy accepted it")
                    if not ok:
                        print(f"     -> {why[:300]}")

            # Negative: what the naive patches would do.
            naive_out = copy.deepcopy(envoy_filters)
            for ef in naive_out:
                for cp in ef["spec"]["configPatches"]:
                    if cp["applyTo"] == "CLUSTER" and cp["patch"]["operation"] == "MERGE":
                        cp["patch"]["value"]["transport_socket"]["typed_config"]["common_tls_context"] = {
                            "combined_validation_context": {"default_validation_context": {"trust_chain_verification": "ACCEPT_UNTRUSTED"}}}
            naive_in = copy.deepcopy(envoy_filters)
            for ef in naive_in:
                for cp in ef["spec"]["configPatches"]:
                    if cp["applyTo"] == "NETWORK_FILTER":
                        cp["patch"]["value"]["typed_config"].pop("max_early_data_bytes", None)
            for what, efs in (
                ("outbound patch with a partial combined_validation_context (breaks PassthroughCluster)", naive_out),
                ("inbound tcp_proxy patch without max_early_data_bytes (Envoy >= 1.38 requires it)", naive_in),
            ):
                cfg = copy.deepcopy(fixture)
                apply_envoy_filters(cfg, efs)
                ok, why = envoy_validate(envoy, cfg)
                r.check(f"negative envoy rejects the {what}", not ok, "Envoy accepted it")
                if not ok:
                    print(f"     -> {why[:300]}")
            bad_plugins = copy.deepcopy(plugins)
            bad_plugins[0]["spec"]["pluginConfig"]["curator"]["refresh_interval_ms"] = 5
            cfg = copy.deepcopy(fixture)
            render_wasm_plugins(cfg, bad_plugins, wasm)
            ok, why = envoy_validate(envoy, cfg)
            r.check("negative envoy refuses a WasmPlugin whose pluginConfig the filter refuses (FAIL_CLOSE)", not ok, "Envoy accepted it")
            if not ok:
                print(f"     -> {why[:300]}")

    # --- negative schema cases
    for path in sorted((HERE / "fixtures" / "negative").glob("*.yaml")):
        expect = re.search(r"^# expect: (.+)$", path.read_text(), re.M)
        docs = docs_by_file.get(path, [])
        if not expect or len(docs) != 1:
            r.fail(f"negative {rel(path)}", "needs one document and an '# expect: ...' line")
            continue
        if validator.is_istio(docs[0]) and not crds:
            r.fail(f"negative {rel(path)}", "no CRD schemas loaded")
            continue
        errs = "; ".join(validator.errors(docs[0]))
        r.check(f"negative {rel(path)} rejected", expect.group(1) in errs,
                f"expected an error containing {expect.group(1)!r}, got {errs or 'no error'!r}")
        if errs:
            print(f"     -> {errs[:300]}")

    # --- demo dry run, and the install overlay it generates
    demo = ISTIO / "demo" / "run-all.sh"
    with tempfile.TemporaryDirectory(prefix="mazu-demo-") as workdir:
        env = dict(
            os.environ,
            MAZU_DEMO_WORKDIR=workdir,
            MAZU_FILTER_URL="oci://registry.example/mazu-filter@sha256:" + "ab" * 32,
            MAZU_FILTER_SHA256="ab" * 32,
            MAZU_CURATOR_IMAGE="registry.example/curator@sha256:" + "cd" * 32,
            MAZU_AGENT_IMAGE="registry.example/agent@sha256:" + "ef" * 32,
            MAZU_CHECKPOINT_KEY=CHECKPOINT_KEY,
        )
        proc = subprocess.run(["bash", str(demo), "--dry-run"], capture_output=True, text=True, env=env,
                              timeout=600, cwd=REPO)
        out = proc.stdout
        steps = re.findall(r"^==> (.+)$", out, re.M)
        needed = ["kind: WasmPlugin", "kind: EnvoyFilter", "kind: PeerAuthentication", "istioctl install",
                  "istioctl proxy-config", "kubectl apply", "certificate_missing_mazu_extension"]
        missing = [n for n in needed if n not in out]
        r.check(f"demo {rel(demo)} --dry-run", proc.returncode == 0 and not missing and len(steps) >= 6,
                f"exit {proc.returncode}, {len(steps)} steps, missing {missing}; stderr: {proc.stderr[-400:]}")
        if proc.returncode == 0:
            print(f"     -> {len(steps)} steps, {len(out.splitlines())} lines printed")
        try:
            generated = kustomize_lite.build(workdir)
        except (kustomize_lite.KustomizeError, OSError, yaml.YAMLError) as e:
            r.fail("demo generated install overlay renders", str(e))
            generated = []
        for doc in generated:
            errs = validator.errors(doc) if (crds or not validator.is_istio(doc)) else ["no CRD schemas loaded"]
            if doc.get("kind") == "WasmPlugin" and not errs:
                spec = doc["spec"]
                if spec.get("url") != env["MAZU_FILTER_URL"] or spec.get("sha256") != env["MAZU_FILTER_SHA256"]:
                    errs.append("the pinned filter url/sha256 were not applied")
                if spec.get("pluginConfig", {}).get("curator", {}).get("checkpoint_key") != CHECKPOINT_KEY:
                    errs.append("the curator's checkpoint key was not pinned")
                code, line = checker.run(plugin_config_json(doc))
                if code != 0:
                    errs.append(f"pluginConfig refused: {line}")
            if doc.get("kind") == "Deployment":
                image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
                if image != env["MAZU_CURATOR_IMAGE"]:
                    errs.append(f"curator image {image} is not {env['MAZU_CURATOR_IMAGE']}")
            if doc.get("kind") == "DaemonSet":
                image = doc["spec"]["template"]["spec"]["containers"][0]["image"]
                if image != env["MAZU_AGENT_IMAGE"]:
                    errs.append(f"agent image {image} is not {env['MAZU_AGENT_IMAGE']}")
            name = f"demo generated install overlay: {describe(doc)}"
            if errs:
                r.fail(name, "; ".join(errs))
            else:
                r.ok(name)
        # The overlay puts this cluster's issuer and JWKS into the validator's trust too (the
        # dry run uses the base's placeholders, so equality alone would not show the patch).
        name = ("demo generated install overlay: ConfigMap mazu-validator patched with the issuer and JWKS, its trust = "
                "the patched WasmPlugins', accepted by the module's parser")
        try:
            overlay = yaml.safe_load((Path(workdir) / "kustomization.yaml").read_text())
            problems = []
            if not any(p["target"].get("kind") == "ConfigMap" and p["target"].get("name") == "mazu-validator"
                       for p in overlay.get("patches", [])):
                problems.append("no patch of ConfigMap mazu-validator")
            gen_ds = next(d for d in generated if d.get("kind") == "DaemonSet")
            gen_cms = {(d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
                       for d in generated if d.get("kind") == "ConfigMap"}
            text, found = daemonset_validator_config(gen_ds, gen_cms)
            problems += found
            if text is not None and "mazu" in template_pods:
                problems += validator_config_problems(text, template_pods["mazu"],
                                                      [d for d in generated if d.get("kind") == "WasmPlugin"], samples,
                                                      derives_destinations(gen_ds))
                code, line = ConfigChecker("mazu-validator").run(text)
                if code != 0:
                    problems.append(f"refused by the module's parser: {line}")
            r.check(name, not problems, "; ".join(problems))
        except (OSError, yaml.YAMLError, StopIteration, KeyError, TypeError) as e:
            r.fail(name, repr(e))

    print(f"istio-check: {r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
