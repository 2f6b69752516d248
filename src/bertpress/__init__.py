"""bertpress: task-agnostic knowledge distillation of BERT-family encoders into small, fast students.

The Python API takes the same recipes as the CLI (a path, a dict or a :class:`Recipe`)::

    import bertpress
    run = bertpress.distill("recipes/tinybert-3l.yaml", overrides=["train.max_steps=200"])
    report = bertpress.evaluate_models([run.output_dir], ["stsb", "stsb-zeroshot"], teacher="packaged:all-MiniLM-L6-v2")
    bertpress.export_model(run.output_dir, run.output_dir / "onnx")

Names are imported on first use, so ``import bertpress`` (and ``bertpress --version``) stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_API = {
    "distill": "bertpress.pipeline", "distill_cohort": "bertpress.train.cohort", "build_run": "bertpress.train.build", "resolve_recipe": "bertpress.train.build",
    "load_recipe": "bertpress.recipe", "Recipe": "bertpress.recipe", "Callback": "bertpress.train.callbacks",
    "evaluate_models": "bertpress.evaluate.compare", "search_mapping": "bertpress.search.search",
    "export_model": "bertpress.export", "run_quickstart": "bertpress.quickstart",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'bertpress' has no attribute {name!r}")
