#!/usr/bin/env bash
# Step 1: install Istio with Mazu's settings (istio/install/istio-mazu.yaml): the
# "mazu" sidecar-injection template that adds the Mazu agent to opted-in pods.
#   bash istio/demo/01-install-istio.sh [--dry-run]
# shellcheck source=istio/demo/lib.sh
source "$(dirname "$0")/lib.sh"
parse_args "$@"

step "Install Istio (istioctl) with the Mazu injection template"
note "resources: the IstioOperator below (istioctl renders Istio's own charts from it)"
indent <"$ISTIO_DIR/install/istio-mazu.yaml"
run istioctl install -y -f "$ISTIO_DIR/install/istio-mazu.yaml"
run kubectl -n istio-system rollout status deployment/istiod --timeout=300s
run istioctl version
