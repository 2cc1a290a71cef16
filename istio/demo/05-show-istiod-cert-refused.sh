#!/usr/bin/env bash
# Step 5: a certificate from istiod's CA, for the very same identity
# (spiffe://cluster.local/ns/mazu-demo/sa/sleep), is refused: istiod is not trusted.
#   bash istio/demo/05-show-istiod-cert-refused.sh [--dry-run]
# shellcheck source=istio/demo/lib.sh
source "$(dirname "$0")/lib.sh"
parse_args "$@"

step "sleep-istiod presents a certificate signed by istiod's CA for sa/sleep; sleep a self-signed Mazu one"
show_cert() {
  shell "istioctl proxy-config secret deploy/$1 -n $DEMO_NS -o json | python3 -c 'import base64,json,sys; d=json.load(sys.stdin); s=[x for x in d[\"dynamicActiveSecrets\"] if x[\"name\"]==\"default\"][0]; sys.stdout.write(base64.b64decode(s[\"secret\"][\"tlsCertificate\"][\"certificateChain\"][\"inlineBytes\"]).decode())' | openssl x509 -noout -subject -issuer -ext subjectAltName"
}
note "issuer: istiod's CA (O = cluster.local); URI SAN spiffe://cluster.local/ns/$DEMO_NS/sa/sleep"
show_cert sleep-istiod
note "issuer = subject (self-signed), the same URI SAN, plus the Mazu extension carrying the token"
show_cert sleep

step "sleep-istiod -> httpbin: refused in the TLS handshake (HTTP 503 from the client's sidecar)"
expect_output 503 kubectl -n "$DEMO_NS" exec deploy/sleep-istiod -c sleep -- \
  curl -sS -o /dev/null -w '%{http_code}\n' --max-time 10 http://httpbin:8000/get

step "Both sides refuse the other in the handshake"
note "sleep-istiod's sidecar trusts istiod's CA only: httpbin's self-signed Mazu certificate fails its verification"
shell "kubectl -n $DEMO_NS exec deploy/sleep-istiod -c istio-proxy -- pilot-agent request GET stats | grep -E 'httpbin.*ssl\\.(fail_verify_error|connection_error)'"
note "httpbin's sidecar trusts Mazu's validator only: a client showing istiod's certificate is refused there"
note "(reason certificate_missing_mazu_extension; logged only if the client got that far, since TLS 1.3 clients verify the server first)"
shell "kubectl -n $DEMO_NS logs deploy/httpbin -c istio-proxy | grep 'mazu-validator: refused' | tail -n 3"
shell "kubectl -n $DEMO_NS exec deploy/httpbin -c istio-proxy -- pilot-agent request GET stats | grep -E 'ssl\\.fail_verify_error'"
