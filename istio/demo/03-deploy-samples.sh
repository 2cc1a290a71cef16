#!/usr/bin/env bash
# Step 3: deploy the two sample services (sleep -> httpbin, both Mazu workloads) and an
# impostor client (sleep-istiod: same service account, istiod's certificate).
#   bash istio/demo/03-deploy-samples.sh [--dry-run]
# shellcheck source=istio/demo/lib.sh
source "$(dirname "$0")/lib.sh"
parse_args "$@"

step "Create the demo namespace (sidecar injection on) and enable Mazu there (PeerAuthentication STRICT)"
apply_file "$DEMO_DIR/samples/namespace.yaml"
apply_kustomize "$ISTIO_DIR/namespace"

step "Deploy httpbin (server) and sleep (client), both served by the Mazu node agent; and the impostor sleep-istiod"
apply_file "$DEMO_DIR/samples/httpbin.yaml"
apply_file "$DEMO_DIR/samples/sleep.yaml"
apply_file "$DEMO_DIR/samples/sleep-istiod.yaml"
for d in httpbin sleep sleep-istiod; do
  run kubectl -n "$DEMO_NS" rollout status "deployment/$d" --timeout=300s
done
note "Mazu pods have the init container mazu-wait, which ends once the node agent serves their socket, so istio-proxy finds it"
run kubectl -n "$DEMO_NS" get pods -o 'custom-columns=POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name'
note "the node agent logs each pod it serves, by pod uid"
shell "kubectl -n mazu-node logs daemonset/mazu-agent --tail=50 | grep 'started serving the pod'"
