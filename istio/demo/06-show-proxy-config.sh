#!/usr/bin/env bash
# Step 6: what istiod pushed to httpbin's sidecar: the Mazu filter (ECDS), the patched
# TLS contexts, the certificates from the Mazu agent, and the curator cluster.
#   bash istio/demo/06-show-proxy-config.sh [--dry-run]
# shellcheck source=istio/demo/lib.sh
source "$(dirname "$0")/lib.sh"
parse_args "$@"

step "Inbound listener: the Mazu filter (ECDS name istio-system.mazu-inbound) first in each mTLS chain"
shell "istioctl proxy-config listener deploy/httpbin -n $DEMO_NS --port 15006 -o json | grep -n -E 'istio-system.mazu-inbound|ROOTCA|upstream_connect_mode' | head -n 20"
step "The filter configuration itself (the WasmPlugin's pluginConfig), as delivered over ECDS"
shell "istioctl proxy-config ecds deploy/httpbin -n $DEMO_NS -o json | grep -n -E 'mazu' | head -n 20"
step "Outbound: the tlsMode-istio TLS context validates the server with ROOTCA alone (from the node agent: Mazu's validator module, ConfigMap mazu-validator)"
shell "istioctl proxy-config cluster deploy/sleep -n $DEMO_NS --fqdn httpbin.$DEMO_NS.svc.cluster.local -o json | grep -n -E 'tlsMode-istio|ROOTCA|\"default\"' | head -n 20"
step "The curator cluster the filter's callouts use"
run istioctl proxy-config cluster deploy/httpbin -n "$DEMO_NS" --fqdn mazu-curator.mazu-system.svc.cluster.local
step "Certificates come from the Mazu agent over the workload-spiffe-uds socket"
run istioctl proxy-config secret deploy/httpbin -n "$DEMO_NS"
