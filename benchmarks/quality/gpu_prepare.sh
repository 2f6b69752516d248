#!/usr/bin/env bash
# Prepare what benchmarks/quality/gpu.sh and benchmarks/throughput/gpu.sh need on the bare GPU machine (no network
# there), in git-ignored folders that the device tool carries (64 MiB in all, the repository included):
#   .whl/  wheels the machine lacks (pydantic and its parts, seqeval, TextBrewer), for its Python 3.12
#   .gpu/  the packaged teacher in bf16 (gpu_run.py restores fp32 there), 20 Wikipedia shards, STS-B, RTE and MRPC
# Run here, from the repository root:  bash benchmarks/quality/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY=${PY:-.venv/bin/python}
DATA=${BERTPRESS_DATA:-../shared/data}
rm -rf .whl .gpu && mkdir -p .whl .gpu/data/glue .gpu/data/corpus
for spec in "pydantic==$($PY -c 'import pydantic; print(pydantic.VERSION)')" \
            "pydantic-core==$($PY -c 'import pydantic_core; print(pydantic_core.__version__)')" \
            "annotated-types==$($PY -c 'import importlib.metadata as m; print(m.version("annotated-types"))')" \
            "typing-inspection==$($PY -c 'import importlib.metadata as m; print(m.version("typing-inspection"))')"; do
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$spec"
done
# seqeval and TextBrewer ship as source distributions only: build their (pure Python) wheels here
for pkg in seqeval textbrewer; do
  $PY -m pip wheel -q --no-deps -w .whl "$pkg==$($PY -c "import importlib.metadata as m; print(m.version('$pkg'))")"
done
$PY - <<'PY'
import torch
from bertpress.models.teacher import packaged_teacher_path
from bertpress.models.sentence_stack import copy_sentence_stack
from transformers import AutoModel, AutoTokenizer
src = packaged_teacher_path()
model = AutoModel.from_pretrained(src).to(torch.bfloat16)
model.save_pretrained(".gpu/teacher-bf16")
AutoTokenizer.from_pretrained(src).save_pretrained(".gpu/teacher-bf16")
copy_sentence_stack(src, ".gpu/teacher-bf16", model.config.hidden_size)
PY
# 20 of the 30 Wikipedia shards (4.5M tokens): with TextBrewer's wheel the full set no longer fits the 64 MiB
mkdir -p .gpu/data/corpus/enwiki-wikiextractor-2015/AA
cp "$DATA"/corpus/enwiki-wikiextractor-2015/AA/wiki_{0,1}[0-9].gz .gpu/data/corpus/enwiki-wikiextractor-2015/AA/
for task in STS-B RTE MRPC; do cp -r "$DATA/glue/$task" .gpu/data/glue/; done
total=$(( $(git ls-files -co --exclude-standard | xargs du -cb | tail -1 | cut -f1) + $(du -sb .whl .gpu | awk '{s+=$1} END {print s}') ))
echo "travels: $((total / 1048576)) MiB of 64"
[ "$total" -lt $((63 * 1048576)) ] || { echo "over the device tool's limit: carry less" >&2; exit 1; }
