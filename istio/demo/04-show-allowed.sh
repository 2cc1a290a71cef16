#!/usr/bin/env bash
# Step 4: traffic between two registered Mazu workloads is allowed.
#   bash istio/demo/04-show-allowed.sh [--dry-run]
# shellcheck source=istio/demo/lib.sh
source "$(dirname "$0")/lib.sh"
parse_args "$@"

step "Both workloads are registered with the curator"
note "mazu_curator_log_entries counts registrations (2: httpbin and sleep; the node agent does not serve sleep-istiod, which has no Mazu token volume)"
shell "kubectl get --raw /api/v1/namespaces/mazu-system/services/https:mazu-curator:7878/proxy/metrics | grep -E '^mazu_curator_(log_entries|registrations_accepted_total)'"

step "sleep -> httpbin over Mazu mTLS: allowed (HTTP 200)"
expect_output 200 kubectl -n "$DEMO_NS" exec deploy/sleep -c sleep -- \
  curl -sS -o /dev/null -w '%{http_code}\n' http://httpbin:8000/get
note "httpbin sees the client's SPIFFE ID (from the self-signed Mazu certificate) in X-Forwarded-Client-Cert"
expect_output 'spiffe://cluster.local/ns/mazu-demo/sa/sleep' kubectl -n "$DEMO_NS" exec deploy/sleep -c sleep -- \
  curl -sS http://httpbin:8000/headers

step "The filter's counters in httpbin's sidecar"
shell "kubectl -n $DEMO_NS exec deploy/httpbin -c istio-proxy -- pilot-agent request GET stats | grep 'wasmcustom.mazu.inbound.connections_'"
