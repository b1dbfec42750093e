#!/usr/bin/env bash
# Client SDKs for tests/e2e/clients that cannot share .venv: each gets its own
# environment, made once (a marker file records the pins) and checked after that.
#   Node `openai`           -> $THINKGATE_NODE_CLIENTS (default ~/.cache/thinkgate-node)
#   pydantic-ai (openai>=3) -> $THINKGATE_CLIENT_VENVS/pydantic-ai
#   instructor (pins jiter/rich below .venv's) -> $THINKGATE_CLIENT_VENVS/instructor
# (default ~/.cache/thinkgate-venvs). A client that fails to install only makes its test
# skip locally (and fail in CI, which must have it): this script reports and goes on.
set -uo pipefail
cd "$(dirname "$0")/.."

NODE_DIR=${THINKGATE_NODE_CLIENTS:-$HOME/.cache/thinkgate-node}
VENVS=${THINKGATE_CLIENT_VENVS:-$HOME/.cache/thinkgate-venvs}
PY=${PYTHON:-python3}
NODE_OPENAI=7.59.0
status=0

if command -v npm >/dev/null; then
  mkdir -p "$NODE_DIR"
  if [[ "$(cat "$NODE_DIR/.thinkgate-openai" 2>/dev/null)" != "$NODE_OPENAI" ]]; then
    [[ -f "$NODE_DIR/package.json" ]] || echo '{"name": "thinkgate-node-clients", "private": true}' >"$NODE_DIR/package.json"
    # openai 7 declares node >= 22; Debian's node 20 runs everything the tests use (a warning only)
    if (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error "openai@$NODE_OPENAI" >/dev/null); then
      echo "$NODE_OPENAI" >"$NODE_DIR/.thinkgate-openai"
    else
      echo "npm install openai@$NODE_OPENAI failed" >&2; status=1
    fi
  fi
else
  echo "npm not found: the Node client test will skip" >&2
fi

client_venv() {  # name, pip requirements...
  local name=$1; shift
  local dir="$VENVS/$name" want="$*"
  [[ "$(cat "$dir/.thinkgate-client" 2>/dev/null)" == "$want" ]] && return 0
  rm -rf "$dir"
  "$PY" -m venv "$dir" && "$dir/bin/python" -m pip -q --disable-pip-version-check install "$@" &&
    echo "$want" >"$dir/.thinkgate-client" || { echo "client venv $name failed" >&2; status=1; }
}
mkdir -p "$VENVS"
client_venv pydantic-ai "pydantic-ai-slim[openai]==2.68.0"
client_venv instructor "instructor==1.17.0" "openai==2.54.0"
exit $status
