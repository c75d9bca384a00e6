#!/usr/bin/env bash
# The test command (README and CI): set up the venv, then run the fast suite plus the
# representative slow tests marked `ci`. Pass pytest arguments to override the selection, e.g.
#   bash scripts/test.sh -m slow        # every real-model test (long)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${VENV:-.venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ $# -eq 0 ]]; then
  set -- -m "not slow or ci"
fi
# pytest exits 5 when it collects no test: that fails this script, as it should.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
