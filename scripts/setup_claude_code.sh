#!/usr/bin/env bash
# Claude Code (npm @anthropic-ai/claude-code, pinned) for tests/e2e/agents/test_claude_code.py,
# installed once under $THINKGATE_CLAUDE_CODE (default ~/.cache/thinkgate-claude-code); a marker
# file records the version so a later run is a no-op. The package ships a native binary per
# platform (an optional dependency), so Debian's node 20 installs it despite `engines: node>=22`.
# A failed install only makes the test skip locally (and fail in CI, which must have it).
set -uo pipefail

DIR=${THINKGATE_CLAUDE_CODE:-$HOME/.cache/thinkgate-claude-code}
VERSION=2.1.337

command -v npm >/dev/null || { echo "npm not found: the Claude Code test will skip" >&2; exit 1; }
mkdir -p "$DIR"
[[ "$(cat "$DIR/.thinkgate-claude-code" 2>/dev/null)" == "$VERSION" && -x "$DIR/node_modules/.bin/claude" ]] && exit 0
[[ -f "$DIR/package.json" ]] || echo '{"name": "thinkgate-claude-code", "private": true}' >"$DIR/package.json"
if (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error --engine-strict=false \
      "@anthropic-ai/claude-code@$VERSION" >/dev/null) && "$DIR/node_modules/.bin/claude" --version >/dev/null; then
  echo "$VERSION" >"$DIR/.thinkgate-claude-code"
else
  echo "npm install @anthropic-ai/claude-code@$VERSION failed" >&2
  exit 1
fi
