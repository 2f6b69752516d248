#!/usr/bin/env bash
# Create .venv (if missing) and install bertpress with its test tools. PyTorch is pinned and installed first:
# an unpinned torch would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${BERTPRESS_TORCH:-2.13.0}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "bertpress needs Python >= 3.10"'
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if ! python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==$TORCH_VERSION"
fi
python -m pip install -q -e ".[dev]"
