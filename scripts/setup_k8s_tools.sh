#!/usr/bin/env bash
# The manifest checkers for tests/deploy/: kubernetes-validate (offline Kubernetes
# schemas) and checkov, in a venv of their own: checkov pins dozens of packages
# (boto3, networkx, ...) that must not move the gateway's own.
# Idempotent: a second run only checks. Prints the venv's path last.
#
#   scripts/setup_k8s_tools.sh
#   THINKGATE_K8S_VENV=... scripts/setup_k8s_tools.sh
set -euo pipefail

PY=${PYTHON:-python3}
VENV=${THINKGATE_K8S_VENV:-$HOME/.cache/thinkgate-venvs/k8s}
want="checkov==3.3.30 kubernetes-validate==1.37.0"
STAMP="$VENV/.thinkgate-k8s"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && [[ -x "$VENV/bin/checkov" && -x "$VENV/bin/kubernetes-validate" ]]; then
  echo "k8s tools venv ok: $VENV" >&2
else
  echo "installing $want into $VENV (one time, ~2 min)..." >&2
  rm -f "$STAMP"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip -q --disable-pip-version-check install $want 2> >(grep -v "^WARNING: Location " >&2)
  echo "$want" > "$STAMP"
fi
echo "THINKGATE_K8S_VENV=$VENV"
