"""Proxy mode: a fast, deterministic downstream fitness (one number) for the layer-mapping search.

Fine-tunes on a fixed subset of a few GLUE tasks with one fixed seed and short sequences, scores a fixed slice of
each dev set, and returns the mean task score. The same model and data always give the same number (same seed,
same subset, same batch order; torch CPU kernels are deterministic for a fixed thread count). Time budget,
measured in docs/evaluation.md: about 1.5 minutes for a 3-layer, 384-wide student on 2 CPU cores.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from bertpress.data.tasks.files import resolve_data_dir
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.settings import DEFAULTS, FinetuneSettings, resolve_settings
from bertpress.evaluate.suite import ModelSpec, evaluate_model
from bertpress.evaluate.tasks import TaskData, load_task
from bertpress.models.teacher import resolve_model

log = logging.getLogger(__name__)

#: Sentence classification, sentence-pair similarity and token tagging: each learns from 2k examples, is cheap
#: (short inputs), and separates weak encoders (MRPC and RTE collapse to the majority class at this size).
PROXY_TASKS = ("sst2", "stsb", "conll2003")
#: Settings applied to every proxy task before any caller overrides.
PROXY_OVERRIDES = ("max_train_examples=2000", "max_eval_examples=500", "epochs=2", "lr=1e-4", "max_length=64",
                   "seeds=[0]")


def fine_tunes(tasks: Sequence[str]) -> bool:
    """Whether any of ``tasks`` is fine-tuned (zero-shot tasks are not, and have no seeds)."""
    return any(isinstance(DEFAULTS[t], FinetuneSettings) for t in tasks)


def proxy_settings(tasks: Sequence[str] = PROXY_TASKS, overrides: Sequence[str] = ()) -> dict[str, FinetuneSettings]:
    """The proxy's settings of ``tasks``: :data:`PROXY_OVERRIDES` where a selected task has the setting (zero-shot
    tasks have no training settings), then ``overrides``."""
    fields = {f for t in tasks for f in type(DEFAULTS[t]).model_fields}
    own = [o for o in PROXY_OVERRIDES if o.split("=", 1)[0] in fields]
    return resolve_settings(tasks, [*own, *overrides])


@lru_cache(maxsize=16)
def _task(name: str, data_dir: Path) -> TaskData:
    data = load_task(name, data_dir)
    return replace(data, dev=dict(list(data.dev.items())[:1]))  # the dev set only (not CoNLL's test set)


def proxy_scores(model_dir: Path, data_dir: Path | None = None, *, tasks: Sequence[str] = PROXY_TASKS,
                 overrides: Sequence[str] = (), cache: ResultCache | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Each proxy task's dev score and their mean (``fitness``) for the model in ``model_dir``. With several
    fine-tuning seeds (``overrides=["seeds=[0,1,2]"]``) scores are means over seeds, and ``fitness_by_seed`` (the
    mean over tasks of each seed's runs) and its sample std ``fitness_std`` say how noisy the fitness is."""
    data = [_task(t, resolve_data_dir(data_dir)) for t in tasks]
    results = evaluate_model(ModelSpec(Path(model_dir).name, Path(resolve_model(str(model_dir)))), data,
                             proxy_settings(tasks, overrides), cache or ResultCache(), progress=progress)
    scores: dict[str, Any] = {t: r["mean"]["score"] for t, r in results.items()}
    out = {**scores, "fitness": sum(scores.values()) / len(scores)}
    runs = [r["runs"] for r in results.values()]
    if len(runs[0]) > 1:
        by_seed = [sum(task_runs[i]["metrics"]["score"] for task_runs in runs) / len(runs) for i in range(len(runs[0]))]
        out["fitness_by_seed"] = by_seed
        out["fitness_std"] = statistics.stdev(by_seed)
    return out


def proxy_fitness(model_dir: Path, data_dir: Path | None = None, **kwargs) -> float:
    """The proxy fitness of ``model_dir``: mean dev score over :data:`PROXY_TASKS` (higher is better)."""
    return float(proxy_scores(model_dir, data_dir, **kwargs)["fitness"])
