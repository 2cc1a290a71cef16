#!/usr/bin/env bash
# Step 2: install Mazu (the curator, the node agent DaemonSet and its validator ConfigMap,
# the WasmPlugins, the EnvoyFilters) with this
# cluster's service-account issuer and JWKS. Writes a kustomize overlay on top of
# istio/overlays/dev (or $MAZU_OVERLAY) that patches them in, then applies it.
#   bash istio/demo/02-install-mazu.sh [--dry-run]
# Environment:
#   MAZU_OVERLAY          overlay to build on (default istio/overlays/dev: insecure dev CRS)
#   MAZU_DEMO_WORKDIR     where the generated overlay goes (default istio/overlays/local;
#                         a temporary directory with --dry-run)
#   MAZU_FILTER_URL       the filter module, e.g. oci://registry/mazu-filter@sha256:<digest>
#   MAZU_FILTER_SHA256    its digest (64 hex digits), checked by istio-agent
#   MAZU_CURATOR_IMAGE    curator image, e.g. registry/curator@sha256:<digest>
#   MAZU_AGENT_IMAGE      agent image (the DaemonSet), e.g. registry/agent@sha256:<digest>;
#                         the injection templates name it too (istio/install/istio-mazu.yaml)
#   MAZU_CURATOR_TLS_KEY  the curator's TLS key file (default WORKDIR/tls.key, created with
#                         `mazu-curator tls-pin --create-key`, which must be on PATH); its
#                         pin goes into the agent
#                         DaemonSet and the EnvoyFilter mazu-curator-cluster, the key into
#                         the Secret mazu-curator-tls
#   MAZU_CHECKPOINT_KEY   the curator's checkpoint verifier key (GET /v1/checkpoint/key),
#                         pinned in both WasmPlugins; without it the key is read from the
#                         curator once it is up and patched in (trust on first use)
# shellcheck source=istio/demo/lib.sh
source "$(dirname "$0")/lib.sh"
parse_args "$@"

overlay="${MAZU_OVERLAY:-$ISTIO_DIR/overlays/dev}"
workdir="${MAZU_DEMO_WORKDIR:-$ISTIO_DIR/overlays/local}"
if [[ $DRY_RUN == 1 && -z ${MAZU_DEMO_WORKDIR:-} ]]; then
  workdir="$(mktemp -d)"  # a dry run leaves the tree alone
  trap 'rm -rf "$workdir"' EXIT
fi
mkdir -p "$workdir"

step "Read the cluster's service-account token issuer and its JWKS"
if [[ $DRY_RUN == 1 ]]; then
  printf '+ kubectl get --raw /.well-known/openid-configuration\n+ kubectl get --raw /openid/v1/jwks\n'
  note "dry run: using the base's placeholder issuer and JWKS instead"
  issuer="https://kubernetes.default.svc.cluster.local"
  jwks="$(python3 -c 'import json,sys,yaml; d=yaml.safe_load(open(sys.argv[1])); print(json.dumps(json.loads(d["data"]["jwks.json"])))' \
    "$ISTIO_DIR/base/curator/issuers-configmap.yaml")"
else
  issuer="$(kubectl get --raw /.well-known/openid-configuration | python3 -c 'import json,sys; print(json.load(sys.stdin)["issuer"])')"
  jwks="$(kubectl get --raw /openid/v1/jwks)"
fi
note "issuer: $issuer"

step "The curator's TLS key and its pin (agents and sidecars pin it; no CA is trusted)"
tls_key="${MAZU_CURATOR_TLS_KEY:-$workdir/tls.key}"
if [[ $DRY_RUN == 1 ]]; then
  printf '+ mazu-curator tls-pin --tls-key %s --create-key\n' "$tls_key"
  tls_pin="$(python3 -c 'import base64,hashlib; print(base64.b64encode(hashlib.sha256(b"dry run").digest()).decode())')"
  note "dry run: a made-up pin"
else
  tls_pin="$(mazu-curator tls-pin --tls-key "$tls_key" --create-key)"
fi
note "TLS pin: $tls_pin (key: $tls_key; keep it: a new key means new pins everywhere)"

step "Write the install overlay $workdir"
MAZU_ISSUER="$issuer" MAZU_JWKS="$jwks" MAZU_TLS_PIN="$tls_pin" MAZU_ISTIO_DIR="$ISTIO_DIR" python3 - "$overlay" "$workdir" <<'PY'
import json, os, sys
import yaml
overlay, workdir = sys.argv[1], sys.argv[2]
issuer, jwks = os.environ["MAZU_ISSUER"], json.loads(os.environ["MAZU_JWKS"])
rel = os.path.relpath(overlay, workdir)
cm_ops = [
    {"op": "replace", "path": "/data/issuers", "value": f"{issuer}=/etc/mazu/issuers/jwks.json;namespaces=*"},
    {"op": "replace", "path": "/data/jwks.json", "value": json.dumps(jwks, indent=2) + "\n"},
]
plugin_ops = [{"op": "replace", "path": "/spec/pluginConfig/trust/issuers",
               "value": [{"issuer": issuer, "namespaces": ["*"], "jwks": jwks}]}]
if os.environ.get("MAZU_FILTER_URL"):
    plugin_ops.append({"op": "replace", "path": "/spec/url", "value": os.environ["MAZU_FILTER_URL"]})
if os.environ.get("MAZU_FILTER_SHA256"):
    plugin_ops.append({"op": "add", "path": "/spec/sha256", "value": os.environ["MAZU_FILTER_SHA256"]})
if os.environ.get("MAZU_CHECKPOINT_KEY"):
    plugin_ops.append({"op": "add", "path": "/spec/pluginConfig/curator/checkpoint_key",
                       "value": os.environ["MAZU_CHECKPOINT_KEY"].strip()})
# The handshake validator's trust is the WasmPlugins' (ConfigMap mazu-validator, config.json).
with open(os.path.join(os.environ["MAZU_ISTIO_DIR"], "base/agent/validator-configmap.yaml")) as f:
    validator = json.loads(yaml.safe_load(f)["data"]["config.json"])
validator["trust"]["issuers"] = [{"issuer": issuer, "namespaces": ["*"], "jwks": jwks}]
validator_ops = [{"op": "replace", "path": "/data/config.json", "value": json.dumps(validator, indent=2) + "\n"}]
pin = os.environ["MAZU_TLS_PIN"]
with open(os.path.join(os.environ["MAZU_ISTIO_DIR"], "base/agent/daemonset.yaml")) as f:
    agent_args = yaml.safe_load(f)["spec"]["template"]["spec"]["containers"][0]["args"]
pin_index = agent_args.index("--curator-tls-pin") + 1
k = {
    "apiVersion": "kustomize.config.k8s.io/v1beta1",
    "kind": "Kustomization",
    "resources": [rel],
    "patches": [
        {"target": {"kind": "ConfigMap", "name": "mazu-curator-issuers", "namespace": "mazu-system"},
         "patch": json.dumps(cm_ops)},
        {"target": {"kind": "ConfigMap", "name": "mazu-validator", "namespace": "mazu-node"},
         "patch": json.dumps(validator_ops)},
        {"target": {"kind": "DaemonSet", "name": "mazu-agent", "namespace": "mazu-node"},
         "patch": json.dumps([{"op": "replace", "path": f"/spec/template/spec/containers/0/args/{pin_index}", "value": pin}])},
        {"target": {"group": "networking.istio.io", "kind": "EnvoyFilter", "name": "mazu-curator-cluster", "namespace": "istio-system"},
         "patch": json.dumps([{"op": "replace", "value": pin, "path":
                               "/spec/configPatches/0/patch/value/transport_socket/typed_config/common_tls_context/validation_context/verify_certificate_spki/0"}])},
    ] + [
        {"target": {"group": "extensions.istio.io", "kind": "WasmPlugin", "name": name, "namespace": "istio-system"},
         "patch": json.dumps(plugin_ops)}
        for name in ("mazu-inbound", "mazu-outbound")
    ],
}
for var, placeholder in (("MAZU_CURATOR_IMAGE", "ghcr.io/mazu-mesh/curator"), ("MAZU_AGENT_IMAGE", "ghcr.io/mazu-mesh/agent")):
    if os.environ.get(var):
        name, sep, digest = os.environ[var].partition("@")
        k.setdefault("images", []).append({"name": placeholder, "newName": name, **({"digest": digest} if sep else {})})
with open(os.path.join(workdir, "kustomization.yaml"), "w") as f:
    f.write("# Generated by istio/demo/02-install-mazu.sh: this cluster's issuer and JWKS.\n")
    json.dump(k, f, indent=2)  # JSON is YAML
    f.write("\n")
PY
indent <"$workdir/kustomization.yaml"

step "Apply Mazu (curator in mazu-system; node agent DaemonSet in mazu-node; WasmPlugins and EnvoyFilters in istio-system)"
note "production: create the ceremony CRS and its transcript first (kubectl -n mazu-system create configmap mazu-crs --from-file=crs.bin --from-file=transcript.bin) and use MAZU_OVERLAY=istio/base"
apply_kustomize "$workdir"
note "the curator's pod waits for its TLS key"
shell "kubectl -n mazu-system create secret generic mazu-curator-tls --from-file=tls.key='$tls_key' --dry-run=client -o yaml | kubectl apply -f -"
run kubectl -n mazu-system rollout status deployment/mazu-curator --timeout=300s
run kubectl -n mazu-node rollout status daemonset/mazu-agent --timeout=300s
note "one node agent per node; each serves the Mazu pods of its node on /run/mazu/pods/<pod uid>/socket"
expect_output '"status"' kubectl get --raw /api/v1/namespaces/mazu-system/services/https:mazu-curator:7878/proxy/readyz
run kubectl -n istio-system get wasmplugins.extensions.istio.io,envoyfilters.networking.istio.io -l app.kubernetes.io/part-of=mazu

step "Pin the curator's checkpoint key in both WasmPlugins"
note "with it, every filter refuses a registry that is not consistent with the curator's append-only log (docs/audit.md)"
if [[ -n ${MAZU_CHECKPOINT_KEY:-} ]]; then
  note "pinned from MAZU_CHECKPOINT_KEY in the overlay above"
else
  key_url=/api/v1/namespaces/mazu-system/services/https:mazu-curator:7878/proxy/v1/checkpoint/key
  if [[ $DRY_RUN == 1 ]]; then
    printf '+ kubectl get --raw %s
' "$key_url"
    key='mazu-curator/<crs digest prefix>+<key hash>+<base64 key>'
  else
    key="$(kubectl get --raw "$key_url" | tr -d '\n')"
  fi
  note "checkpoint key: $key (export MAZU_CHECKPOINT_KEY with it, so that re-running this script keeps it pinned)"
  patch="[{\"op\":\"add\",\"path\":\"/spec/pluginConfig/curator/checkpoint_key\",\"value\":\"$key\"}]"
  for plugin in mazu-inbound mazu-outbound; do
    run kubectl -n istio-system patch wasmplugins.extensions.istio.io "$plugin" --type json -p "$patch"
  done
fi
