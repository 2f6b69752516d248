"""``distill(recipe)``, the Python API behind ``bertpress distill``: what a recipe needs from the evaluation layer
is prepared first, then the distillation runs (:func:`bertpress.train.run.distill`).

With ``teacher.source_task`` (XtremeDistil, Mukherjee et al., 2021) the teacher is fine-tuned on that task with
``bertpress evaluate``'s fine-tuning and default settings (kept under ``<cache>/teachers``, keyed like evaluation
results, so the next run reuses it), and the task's training examples become the labelled data of stages with
``data: labelled`` (a held-out share split off for their early stopping; the dev set stays unseen).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from accelerate import Accelerator

from bertpress.data.corpus import PackedCorpus, default_cache_dir, split_indices
from bertpress.data.tasks.files import default_data_dir, resolve_data_dir
from bertpress.errors import BertpressError
from bertpress.evaluate.finetune import IGNORE
from bertpress.evaluate.settings import resolve_settings
from bertpress.evaluate.suite import RUNNERS, finetuned_model, model_spec
from bertpress.evaluate.tasks import TASKS, load_task
from bertpress.recipe import Recipe
from bertpress.train.build import resolve_recipe
from bertpress.train.callbacks import Callback
from bertpress.train.run import RunResult
from bertpress.train.run import distill as run_distill

log = logging.getLogger(__name__)


def source_task_teacher(recipe: Recipe, *, progress: bool = True) -> tuple[Path, dict]:
    """The teacher fine-tuned on ``teacher.source_task`` (fine-tuned now, or found in the cache): (dir, record)."""
    spec = recipe.teacher.source_task
    if spec.task not in TASKS or TASKS[spec.task].kind not in ("glue", "ner"):
        ok = ", ".join(n for n, t in TASKS.items() if t.kind in ("glue", "ner"))
        raise BertpressError(f"teacher.source_task.task {spec.task!r}: choose a GLUE-format or CoNLL task: {ok}")
    data = load_task(spec.task, resolve_data_dir(spec.data_dir) if spec.data_dir else default_data_dir())
    settings = resolve_settings([spec.task], [f"{k}={json.dumps(v)}" for k, v in spec.settings.items()])[spec.task]
    root = Path(recipe.data.cache_dir or default_cache_dir()) / "teachers"
    return finetuned_model(model_spec(f"teacher={recipe.teacher.name_or_path}"), data, settings, spec.seed, root,
                           progress=progress)


def labelled_examples(recipe: Recipe, tokenizer) -> PackedCorpus:
    """The source task's training examples as padded rows of ``data.block_size`` tokens with their labels (per
    example, or per token for a tagger), and a held-out split (``data.validation_fraction``)."""
    spec = recipe.teacher.source_task
    data = load_task(spec.task, resolve_data_dir(spec.data_dir) if spec.data_dir else default_data_dir())
    settings = resolve_settings([spec.task], [f"{k}={json.dumps(v)}" for k, v in spec.settings.items()])[spec.task]
    width = recipe.data.block_size
    features = RUNNERS[data.info.kind](data).train_features(tokenizer, settings.model_copy(update={"max_length": width}))
    ids = np.full((len(features), width), tokenizer.pad_token_id, dtype=np.int32)
    token_level = isinstance(features[0]["labels"], list)
    labels = (np.full((len(features), width), IGNORE, dtype=np.int64) if token_level
              else np.asarray([f["labels"] for f in features]))
    for i, f in enumerate(features):
        ids[i, :len(f["input_ids"])] = f["input_ids"]
        if token_level:
            labels[i, :len(f["labels"])] = f["labels"]
    pairs = bool(data.train) and getattr(data.train[0], "text_b", None) is not None
    train, valid = split_indices(np.arange(len(ids)), recipe.data.validation_fraction,
                                 recipe.data.max_validation_blocks, width)
    meta = {"task": spec.task, "unit": "pairs" if pairs else "sentences", "examples": len(ids),
            "train_blocks": len(train), "valid_blocks": len(valid), "sources": data.sources}
    return PackedCorpus(ids, train, valid, meta, labels=labels.astype(np.float32) if labels.dtype.kind == "f"
                        else labels)


def distill(recipe: Recipe | str | Path | dict, *, overrides: list[str] | None = None, resume: bool = False,
            overwrite: bool = False, stop_after: int | None = None, accelerator: Accelerator | None = None,
            callbacks: Sequence[Callback] = ()) -> RunResult:
    """Run the distillation a recipe describes (see :func:`bertpress.train.run.distill` for the arguments); a
    recipe with ``teacher.source_task`` gets its fine-tuned teacher and labelled examples first."""
    recipe = resolve_recipe(recipe, overrides)
    if recipe.teacher.source_task is None:
        return run_distill(recipe, resume=resume, overwrite=overwrite, stop_after=stop_after, accelerator=accelerator,
                           callbacks=callbacks)
    teacher_dir, record = source_task_teacher(recipe)
    log.info("source-task teacher %s: %s dev score %.2f", teacher_dir, record["task"], record["metrics"]["score"])
    from transformers import AutoTokenizer

    labelled = labelled_examples(recipe, AutoTokenizer.from_pretrained(teacher_dir))
    labelled.meta["teacher_dev"] = record["metrics"]
    return run_distill(recipe, resume=resume, overwrite=overwrite, stop_after=stop_after, accelerator=accelerator,
                       callbacks=callbacks, teacher_path=str(teacher_dir), labelled=labelled)
