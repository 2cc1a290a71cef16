#!/usr/bin/env bash
# Remove the demo and Mazu; with --istio also Istio itself.
#   bash istio/demo/99-uninstall.sh [--dry-run] [--istio]
# shellcheck source=istio/demo/lib.sh
source "$(dirname "$0")/lib.sh"
with_istio=0
args=()
for a in "$@"; do if [[ $a == --istio ]]; then with_istio=1; else args+=("$a"); fi; done
parse_args "${args[@]+"${args[@]}"}"
workdir="${MAZU_DEMO_WORKDIR:-$ISTIO_DIR/overlays/local}"

step "Delete the demo namespace (workloads and their PeerAuthentication)"
run kubectl delete namespace "$DEMO_NS" --ignore-not-found
step "Delete Mazu (WasmPlugins and EnvoyFilters first, so no sidecar keeps a filter whose curator is gone)"
run kubectl -n istio-system delete wasmplugins.extensions.istio.io,envoyfilters.networking.istio.io -l app.kubernetes.io/part-of=mazu --ignore-not-found
if [[ -f "$workdir/kustomization.yaml" ]]; then
  run kubectl delete -k "$workdir" --ignore-not-found
else
  run kubectl delete -k "$ISTIO_DIR/overlays/dev" --ignore-not-found
fi
note "the PersistentVolumeClaim goes with the namespace: the registration log is deleted"
run kubectl delete namespace mazu-system --ignore-not-found
note "the node agent goes with mazu-node; its per-pod state is in /run/mazu on each node (gone at reboot)"
run kubectl delete namespace mazu-node --ignore-not-found
if [[ $with_istio == 1 ]]; then
  step "Uninstall Istio"
  run istioctl uninstall --purge -y
  run kubectl delete namespace istio-system --ignore-not-found
fi
