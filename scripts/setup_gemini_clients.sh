#!/usr/bin/env bash
# Google Gemini API clients for tests/e2e/agents/test_gemini_*.py, pinned and cached
# (default ~/.cache/thinkgate-gemini, or $THINKGATE_GEMINI_CLIENTS):
#   node/      the npm `node` package (node 22: `ai` 7 / `@ai-sdk/*` 4 need node >= 22,
#              Debian's is 20), Gemini CLI, `ai` + `@ai-sdk/google`
#   venv/      the `google-genai` Python SDK (its own venv: its pins are not .venv's)
# Idempotent: a marker file records the pins; a second run only checks them.
# A client that fails to install makes its test skip locally (and fail under CI).
set -uo pipefail
cd "$(dirname "$0")/.."

DIR=${THINKGATE_GEMINI_CLIENTS:-$HOME/.cache/thinkgate-gemini}
PY=${PYTHON:-python3}
NODE_PINS="node@22.23.3 @google/gemini-cli@0.61.0 ai@7.0.185 @ai-sdk/google@4.0.129 zod@4.6.7"
PY_PINS="google-genai==3.6.1"
status=0
mkdir -p "$DIR/node"

if command -v npm >/dev/null; then
  if [[ "$(cat "$DIR/node/.thinkgate-pins" 2>/dev/null)" != "$NODE_PINS" ]]; then
    [[ -f "$DIR/node/package.json" ]] || echo '{"name": "thinkgate-gemini-clients", "private": true}' >"$DIR/node/package.json"
    # shellcheck disable=SC2086
    if (cd "$DIR/node" && npm install --no-audit --no-fund --loglevel=error $NODE_PINS >/dev/null); then
      echo "$NODE_PINS" >"$DIR/node/.thinkgate-pins"
    else
      echo "npm install of the Gemini clients failed" >&2; status=1
    fi
  fi
else
  echo "npm not found: the Gemini CLI and @ai-sdk/google tests will skip" >&2
fi

if [[ "$(cat "$DIR/venv/.thinkgate-pins" 2>/dev/null)" != "$PY_PINS" ]]; then
  rm -rf "$DIR/venv"
  # shellcheck disable=SC2086
  "$PY" -m venv "$DIR/venv" && "$DIR/venv/bin/python" -m pip -q --disable-pip-version-check install $PY_PINS &&
    echo "$PY_PINS" >"$DIR/venv/.thinkgate-pins" || { echo "google-genai venv failed" >&2; status=1; }
fi
exit $status
