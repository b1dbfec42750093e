#!/usr/bin/env bash
# A venv with the OpenAI Agents SDK for tests/e2e/test_openai_agents.py. It needs
# openai>=3, which litellm 1.106.2 in .venv refuses, so it lives apart:
#   $THINKGATE_AGENTS_VENV (default ~/.cache/thinkgate-venvs/openai-agents)
# Idempotent: a venv already made for this version is kept.
set -euo pipefail
AGENTS_VERSION=0.24.0
VENV=${THINKGATE_AGENTS_VENV:-$HOME/.cache/thinkgate-venvs/openai-agents}
PY=${PYTHON:-python3}
stamp="$VENV/.thinkgate-agents-$AGENTS_VERSION"
[[ -f "$stamp" ]] && exit 0
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "openai-agents==$AGENTS_VERSION"
touch "$stamp"
echo "openai-agents $AGENTS_VERSION installed in $VENV" >&2
