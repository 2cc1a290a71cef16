# shellcheck shell=bash disable=SC2034  # DEMO_NS and DRY_RUN are read by the scripts that source this file
# Shared by the demo scripts (sourced, not run). Each script takes:
#   --dry-run   print every step, command and the resources it would apply; run nothing
#               (needs only bash, python3 and PyYAML: no cluster, kubectl or istioctl)
#   --help
# Environment: see README.md beside this file.
set -euo pipefail

DEMO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ISTIO_DIR="$(cd "$DEMO_DIR/.." && pwd)"
REPO_DIR="$(cd "$ISTIO_DIR/.." && pwd)"
DEMO_NS="${MAZU_DEMO_NAMESPACE:-mazu-demo}"
DRY_RUN=0

parse_args() {
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h|--help) awk 'NR > 1 && /^# shellcheck/ { exit } NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
      *) echo "$(basename "$0"): unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
  done
  if [[ $DRY_RUN == 0 ]]; then
    for tool in kubectl istioctl; do
      command -v "$tool" >/dev/null 2>&1 || {
        echo "$(basename "$0"): $tool is not installed; use --dry-run to see the steps" >&2; exit 1; }
    done
  fi
}

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    # %s\n' "$*"; }

# quoted ARGS...: the arguments as one shell-readable line.
quoted() {
  local out="" a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=" $a"; else out+=" '${a//\'/\'\\\'\'}'"; fi
  done
  printf '%s' "${out# }"
}

# run CMD...: print it; run it unless --dry-run.
run() {
  printf '+ %s\n' "$(quoted "$@")"
  if [[ $DRY_RUN == 0 ]]; then "$@"; fi
}

# shell 'PIPELINE': the same for a pipeline or redirection (a string, run by bash -c).
shell() {
  printf '+ %s\n' "$1"
  if [[ $DRY_RUN == 0 ]]; then bash -c "$1"; fi
}

indent() { sed 's/^/    | /'; }

# apply_file FILE: kubectl apply -f FILE, printing the resources.
apply_file() {
  printf '+ kubectl apply -f %s\n' "${1#"$REPO_DIR"/}"
  indent <"$1"
  if [[ $DRY_RUN == 0 ]]; then kubectl apply -f "$1"; fi
}

# apply_kustomize DIR: kubectl apply -k DIR, printing the rendered resources.
apply_kustomize() {
  printf '+ kubectl apply -k %s\n' "${1#"$REPO_DIR"/}"
  python3 "$ISTIO_DIR/tools/kustomize_lite.py" build "$1" | indent
  if [[ $DRY_RUN == 0 ]]; then kubectl apply -k "$1"; fi
}

# expect WHAT CMD...: run CMD and say whether its output contains WHAT.
expect_output() {
  local want="$1"; shift
  printf '+ %s\n' "$(quoted "$@")"
  note "expected output contains: $want"
  if [[ $DRY_RUN == 0 ]]; then
    local out; out="$("$@" 2>&1 || true)"
    printf '%s\n' "$out" | indent
    if grep -q -- "$want" <<<"$out"; then echo "    => as expected"; else echo "    => UNEXPECTED (wanted: $want)"; return 1; fi
  fi
}
