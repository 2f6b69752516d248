#!/usr/bin/env bash
# The quality benchmark on one GPU (issue 12, item 5), on the bare device machine. Prepare here first:
#   bash benchmarks/quality/gpu_prepare.sh
# then, through the device tool (one call, about 8 minutes), carrying .whl and .gpu:
#   bash benchmarks/quality/gpu.sh            # writes $OUT/results.json and $OUT/results.md
# and copy them into benchmarks/quality/results/gpu/. On a CPU machine (a smoke run of the same path):
#   OUT=/tmp/gpu-smoke bash benchmarks/quality/gpu.sh --smoke
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ -d .whl ] && ! python3 -c "import pydantic, seqeval" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" BERTPRESS_DATA="$PWD/.gpu/data" HF_HUB_OFFLINE=1 \
  HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: CPU run"
python3 benchmarks/quality/gpu_run.py --teacher .gpu/teacher-bf16 --out "${OUT:-/tmp/gpu-out}" "$@"
