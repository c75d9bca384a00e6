#!/usr/bin/env bash
# The test command (README and CI): set up the venv, then run the fast suite plus the
# representative slow tests marked `ci`. Pass pytest arguments to override the selection, e.g.
#   bash scripts/test.sh -m slow        # every real-model test and every slow matrix cell (long)
# DEPS=lowest / DEPS=highest run it in a venv at the bottom / top of every dependency range
# (scripts/setup_env.sh); .ci/run does both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
DEPS="${DEPS:-}"
VENV="${VENV:-$([[ -n "$DEPS" ]] && echo ".venv-$DEPS" || echo ".venv")}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Two pytest workers (pytest-xdist), one thread each: on this 2-core machine the suite takes half
# the time of one process with two threads (tiny models are bound by per-op overhead, not FLOPs).
# TEST_WORKERS=0 runs in one process.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
WORKERS="${TEST_WORKERS:-2}"
if [[ $# -eq 0 ]]; then
  set -- -m "not slow or ci"
fi
"$VENV/bin/python" -c "import torch, transformers, peft, accelerate, datasets, trl; print('versions:', 'torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__, 'trl', trl.__version__)"
# pytest exits 5 when it collects no test: that fails this script, as it should.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "$WORKERS" --dist loadgroup "$@"
