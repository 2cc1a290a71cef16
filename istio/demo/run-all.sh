#!/usr/bin/env bash
# The whole istioctl demo on a real cluster (kind, minikube, a cloud cluster with
# Kubernetes >= 1.29): install Istio, install Mazu, deploy two sample services, show
# allowed traffic, show that istiod's certificate for the same identity is refused,
# show the filter in `istioctl proxy-config`. Uninstall with 99-uninstall.sh.
#   bash istio/demo/run-all.sh [--dry-run]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
for script in 01-install-istio.sh 02-install-mazu.sh 03-deploy-samples.sh \
              04-show-allowed.sh 05-show-istiod-cert-refused.sh 06-show-proxy-config.sh; do
  printf '\n######## %s\n' "$script"
  bash "$here/$script" "$@"
done
