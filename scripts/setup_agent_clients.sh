#!/usr/bin/env bash
# The coding agents and agent SDKs that tests/e2e/agents drive through thinkgate, pinned:
#   node 22 (npm package `node`: ai 7 / @ai-sdk/* 4 need node >= 22; Debian's is 20),
#   Codex CLI, opencode, and the Vercel AI SDK with its OpenAI and Anthropic providers.
# All in $THINKGATE_AGENT_CLIENTS (default ~/.cache/thinkgate-agents/clients), made once
# (a marker file records the pins) and only checked after that. A failure is reported and
# makes those tests skip locally (and fail in CI, which must have them).
set -uo pipefail

DIR=${THINKGATE_AGENT_CLIENTS:-$HOME/.cache/thinkgate-agents/clients}
PINS="node@22.23.3 @openai/codex@0.171.0 opencode-ai@1.18.33 ai@7.0.185 @ai-sdk/openai@4.0.126 @ai-sdk/anthropic@4.0.112"

command -v npm >/dev/null || { echo "npm not found: the agent client tests will skip" >&2; exit 1; }
[[ "$(cat "$DIR/.thinkgate-pins" 2>/dev/null)" == "$PINS" ]] && exit 0
mkdir -p "$DIR"
[[ -f "$DIR/package.json" ]] || echo '{"name": "thinkgate-agent-clients", "private": true}' >"$DIR/package.json"
# shellcheck disable=SC2086  # PINS is a word list on purpose
if (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error $PINS >/dev/null); then
  echo "$PINS" >"$DIR/.thinkgate-pins"
else
  echo "npm install of the agent clients failed ($PINS)" >&2
  exit 1
fi
