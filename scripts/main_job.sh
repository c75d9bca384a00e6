#!/usr/bin/env bash
# The main job (README): set up the venv, then train + compare this plugin's methods, vanilla
# PEFT prompt tuning and LoRA on the embedded SmolLM2-135M and movie-review sentiment (1 seed).
# Two trainings at once, one thread each (--jobs 2). Extra arguments go to recipes/compare.py (e.g. --seeds 0,1,2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${VENV:-.venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
"$VENV/bin/python" recipes/compare.py --launcher recipes/accelerate/cpu_1proc.yaml \
  --config recipes/configs/compare_default.yaml --jobs 2 "$@"
echo "main job: $(( $(date +%s) - start )) s after set-up"
