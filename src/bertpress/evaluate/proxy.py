"""Proxy mode: a fast, deterministic downstream fitness (one number) for the layer-mapping search.

Fine-tunes on a fixed subset of a few GLUE tasks with one fixed seed and short sequences, scores a fixed slice of
each dev set, and returns the mean task score. The same model and data always give the same number (same seed,
same subset, same batch order; torch CPU kernels are deterministic for a fixed thread count). Time budget,
measured in docs/evaluation.md: about 1.5 minutes for a 3-layer, 384-wide student on 2 CPU cores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from bertpress.data.tasks.files import resolve_data_dir
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.settings import FinetuneSettings, resolve_settings
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


def proxy_settings(tasks: Sequence[str] = PROXY_TASKS, overrides: Sequence[str] = ()) -> dict[str, FinetuneSettings]:
    return resolve_settings(tasks, [*PROXY_OVERRIDES, *overrides])


@lru_cache(maxsize=16)
def _task(name: str, data_dir: Path) -> TaskData:
    return load_task(name, data_dir)


def proxy_scores(model_dir: Path, data_dir: Path | None = None, *, tasks: Sequence[str] = PROXY_TASKS,
                 overrides: Sequence[str] = (), cache: ResultCache | None = None,
                 progress: bool = False) -> dict[str, float]:
    """Each proxy task's dev score and their mean (``fitness``) for the model in ``model_dir``."""
    data = [_task(t, resolve_data_dir(data_dir)) for t in tasks]
    results = evaluate_model(ModelSpec(Path(model_dir).name, Path(resolve_model(str(model_dir)))), data,
                             proxy_settings(tasks, overrides), cache or ResultCache(), progress=progress)
    scores = {t: r["mean"]["score"] for t, r in results.items()}
    return {**scores, "fitness": sum(scores.values()) / len(scores)}


def proxy_fitness(model_dir: Path, data_dir: Path | None = None, **kwargs) -> float:
    """The proxy fitness of ``model_dir``: mean dev score over :data:`PROXY_TASKS` (higher is better)."""
    return proxy_scores(model_dir, data_dir, **kwargs)["fitness"]
