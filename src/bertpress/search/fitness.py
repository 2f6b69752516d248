"""Fitness of one mapping: distil a student with it on a corpus sample, then score it with the proxy mode.

This module is imported by worker processes before anything heavy: torch, transformers and the rest of bertpress
are imported only inside :func:`proxy_fitness`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertpress.errors import BertpressError


@dataclass(frozen=True)
class EvalTask:
    """One fitness evaluation, self-contained and picklable (sent to worker processes and Ray tasks)."""

    key: str
    mapping: tuple[int, ...]
    recipe: dict[str, Any]
    proxy: dict[str, Any]
    fitness: str = "proxy"
    work_dir: str = ""
    eval_cache: str = ""
    threads: int = 1
    keep_student: bool = False
    options: dict[str, Any] = field(default_factory=dict)


FitnessFn = Callable[[EvalTask], dict[str, Any]]


def resolve_fitness(ref: str | FitnessFn) -> FitnessFn:
    """``'proxy'``, a ``'module:function'`` reference, or a callable as is."""
    if callable(ref):
        return ref
    if ref == "proxy":
        return proxy_fitness
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise BertpressError(f"search.fitness {ref!r} cannot be imported ({type(e).__name__}: {e}): give an "
                             "importable module:function, or 'proxy'") from None


def proxy_recipe(task: EvalTask, out_dir: Path) -> dict[str, Any]:
    """The recipe of one proxy distillation: the base recipe, this mapping, the proxy's steps and corpus sample."""
    r = task.recipe
    p = task.proxy
    train = {**r.get("train", {}), "max_steps": p["steps"], "batch_size": p["batch_size"], "eval_every": 0,
             "save_every": 0, "eval_batches": p["eval_batches"], "num_workers": 0,
             "log_every": max(1, min(50, p["steps"] // 5))}
    if p.get("lr") is not None:
        train["lr"] = p["lr"]
    data = {**r["data"], "max_blocks": p.get("max_blocks")}
    return {**{k: v for k, v in r.items() if k != "search"}, "output_dir": str(out_dir), "data": data,
            "train": train, "mapping": {"strategy": "explicit", "layers": list(task.mapping)}}


def proxy_fitness(task: EvalTask) -> dict[str, Any]:
    """Distil ``task.mapping`` for the proxy budget, then the mean proxy score over the proxy tasks."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, task.threads))
    try:
        return _proxy_fitness(task)
    finally:
        torch.set_num_threads(threads)


def _proxy_fitness(task: EvalTask) -> dict[str, Any]:
    from bertpress.train.run import distill

    out = Path(task.work_dir)
    shutil.rmtree(out, ignore_errors=True)  # a crashed earlier attempt's leftovers
    start = time.perf_counter()
    result = distill(proxy_recipe(task, out), overwrite=True)
    return score_proxy_student(task, result, time.perf_counter() - start)


def score_proxy_student(task: EvalTask, result: Any, distill_s: float, **details: Any) -> dict[str, Any]:
    """The proxy fitness record of a distilled student (``result``: its :class:`~bertpress.train.run.RunResult`)
    whose distillation took ``distill_s`` seconds; the student is deleted afterwards unless ``keep_student``."""
    from bertpress.evaluate.cache import ResultCache
    from bertpress.evaluate.proxy import fine_tunes, proxy_scores

    start = time.perf_counter()
    p = task.proxy
    seeds = [f"seeds={json.dumps(p.get('seeds', [0]))}"] if fine_tunes(p["tasks"]) else []
    overrides = [*seeds, *p.get("finetune_overrides", ())]
    scores = proxy_scores(result.student_dir, p.get("data_dir"), tasks=p["tasks"], overrides=overrides,
                          cache=ResultCache(Path(task.eval_cache)) if task.eval_cache else None)
    proxy_s = time.perf_counter() - start
    if not task.keep_student:
        shutil.rmtree(task.work_dir, ignore_errors=True)
    fitness = scores.pop("fitness")
    noise = {k: scores.pop(k) for k in ("fitness_std", "fitness_by_seed") if k in scores}  # proxy.seeds > 1
    return {"fitness": fitness, "scores": scores, "distill_loss": result.summary["final"].get("loss"),
            "distill_s": round(distill_s, 2), "proxy_s": round(proxy_s, 2), "seconds": round(distill_s + proxy_s, 2),
            "tokens": result.summary["tokens_seen"], **noise, **details}


def execute_cohort(tasks: Sequence[EvalTask]) -> list[tuple[str, Any]]:
    """Proxy-evaluate ``tasks`` as one cohort and never raise: their students are distilled together, one teacher
    forward per batch (:func:`bertpress.train.cohort.distill_cohort`; each student equals its solo distillation),
    then each is scored on its own. One ``(status, payload)`` per task, as :func:`execute`; a failed cohort
    distillation fails every member. Each member's ``distill_s`` is its share of the cohort's distillation time;
    its ``cohort`` entry counts the members and the teacher forwards. One task alone is a solo evaluation."""
    import torch

    if len(tasks) == 1:
        return [execute(tasks[0])]

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, tasks[0].threads))
    try:
        start = time.perf_counter()
        try:
            results = _distill_cohort(tasks)
        except Exception as e:
            return [_failure(e)] * len(tasks)
        share = (time.perf_counter() - start) / len(tasks)
        return [execute(t, lambda t, r=r: score_proxy_student(t, r, share, cohort=r.summary["cohort"]))
                for t, r in zip(tasks, results, strict=True)]
    finally:
        torch.set_num_threads(threads)


def _distill_cohort(tasks: Sequence[EvalTask]) -> list[Any]:
    from bertpress.train.cohort import distill_cohort

    for t in tasks:
        shutil.rmtree(t.work_dir, ignore_errors=True)
    return distill_cohort([proxy_recipe(t, Path(t.work_dir)) for t in tasks], overwrite=True)


def execute(task: EvalTask, fn: FitnessFn | None = None) -> tuple[str, Any]:
    """Run one evaluation and never raise: ``("ok", result)``, ``("bad_input", message)`` for a
    :class:`BertpressError` (a bad recipe fails every mapping alike) or ``("error", message)``."""
    start = time.perf_counter()
    try:
        result = dict((fn or resolve_fitness(task.fitness))(task))
        value = result.get("fitness")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return "error", f"fitness function returned fitness {value!r}, not a finite number"
        result["fitness"] = float(value)
        result.setdefault("seconds", round(time.perf_counter() - start, 2))
        result.setdefault("pid", os.getpid())
        return "ok", result
    except Exception as e:
        return _failure(e)


def _failure(e: Exception) -> tuple[str, str]:
    """``("bad_input", message)`` for a :class:`BertpressError` (a bad recipe fails every mapping alike), else
    ``("error", message)`` naming the exception and where it was raised."""
    if isinstance(e, BertpressError):
        return "bad_input", str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return "error", f"{type(e).__name__}: {e}{where}"
