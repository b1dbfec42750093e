#!/usr/bin/env bash
# The default routing encoder (classifier.encoder static): distil the packaged MiniLM into its
# static model once, ahead of the first server start (~1 min on an idle 2-core machine), cached
# under ~/.cache/thinkgate/static (THINKGATE_CACHE overrides). Idempotent: a no-op once there.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m router.embedding.static >/dev/null 2>&1 || .venv/bin/python -m router.embedding.static
