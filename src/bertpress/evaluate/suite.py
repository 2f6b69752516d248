"""Evaluate one model on several tasks: every learning rate x seed, cached; mean and spread per task.

With a learning-rate grid, each rate is run with every seed and the rate with the best mean dev score is reported
(the usual GLUE dev-set protocol; the other rates' means stay in the results).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from torch import nn
from transformers import AutoConfig, AutoTokenizer

from bertpress.atomic import atomic_dir, atomic_write_json
from bertpress.baselines.cvt import CVTTagger
from bertpress.errors import BertpressError
from bertpress.evaluate.cache import ResultCache, model_fingerprint
from bertpress.evaluate.classify import GlueRunner
from bertpress.evaluate.finetune import eval_accelerator, eval_device, load_model, seed_everything, train
from bertpress.evaluate.ner import NerRunner, evaluate_tagger
from bertpress.evaluate.qa import SquadRunner
from bertpress.evaluate.settings import EmbeddingSettings, FinetuneSettings
from bertpress.evaluate.tasks import TASKS, TaskData
from bertpress.evaluate.zeroshot import EmbeddingRunner
from bertpress.models.teacher import check_weight_files, resolve_model
from bertpress.train.run import process_state

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What a task kind provides: the model class and its config, training features, and dev metrics."""

    auto_class: type

    def model_config(self) -> dict[str, Any]: ...

    def train_features(self, tokenizer, settings: FinetuneSettings) -> list[dict[str, Any]]: ...

    def evaluate(self, model: nn.Module, tokenizer, settings: FinetuneSettings, *,
                 progress: bool = True) -> dict[str, float]: ...


RUNNERS: dict[str, type] = {"glue": GlueRunner, "squad": SquadRunner, "ner": NerRunner}


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: its label in reports and its directory (a Hugging Face encoder, or with ``kind``
    ``tagger`` a trained baseline tagger such as CVT, which is scored on NER as it is, not fine-tuned)."""

    label: str
    path: Path
    kind: str = "encoder"


def model_spec(text: str) -> ModelSpec:
    """``PATH`` or ``LABEL=PATH`` (the packaged teacher alias and run directories are accepted; the label defaults
    to the directory's name); the directory must hold a model."""
    label, sep, path = text.partition("=")
    if not sep:
        label, path = "", text
    resolved = Path(resolve_model(path)).expanduser()
    for tagger in (resolved, resolved / "tagger"):  # a CVT run directory, or its tagger/
        if CVTTagger.is_tagger_dir(tagger):
            return ModelSpec(label or Path(path).expanduser().resolve().name, tagger, "tagger")
    if not (resolved / "config.json").is_file():
        raise BertpressError(f"model {path!r} has no config.json: give a directory written by save_pretrained "
                             "(or packaged:all-MiniLM-L6-v2)")
    check_weight_files(resolved, path)
    return ModelSpec(label or (path.removeprefix("packaged:") if path.startswith("packaged:")
                               else Path(path).expanduser().resolve().name), resolved)


def check_taggers(specs: Sequence[ModelSpec], tasks: Sequence[str]) -> None:
    """Taggers (CVT) are scored on NER only: refuse any other task, before any work starts."""
    other = [t for t in tasks if TASKS[t].kind != "ner"]
    tagger = next((s for s in specs if s.kind == "tagger"), None)
    if tagger is not None and other:
        raise BertpressError(f"{tagger.label} is a tagger: it is evaluated on conll2003 only, not on "
                             f"{', '.join(other)}: evaluate it in a run with --tasks conll2003")


def summarise(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one run) and count of every metric over runs."""
    names = [k for k in runs[0]["metrics"] if all(k in r["metrics"] for r in runs)]
    values = {k: np.array([r["metrics"][k] for r in runs], dtype=float) for k in names}
    return {"mean": {k: float(v.mean()) for k, v in values.items()},
            "std": {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
            "n": len(runs)}


def _one_run(spec: ModelSpec, runner: Runner, features: list[dict[str, Any]], tokenizer,
             settings: FinetuneSettings, lr: float, seed: int, task: str, progress: bool,
             keep: list[nn.Module] | None = None) -> dict[str, Any]:
    """One fine-tuning run and its dev metrics; the trained model is appended to ``keep`` when given."""
    accelerator = eval_accelerator(settings.mixed_precision)
    seed_everything(seed)
    model = load_model(spec.path, runner.auto_class, **runner.model_config())
    model, stats = train(model, features, lr=lr, epochs=settings.epochs, batch_size=settings.batch_size,
                         warmup_ratio=settings.warmup_ratio, weight_decay=settings.weight_decay, seed=seed,
                         pad_id=tokenizer.pad_token_id, desc=f"{spec.label} {task} lr={lr:g} seed={seed}",
                         progress=progress, accelerator=accelerator)
    start = time.perf_counter()
    metrics = runner.evaluate(model, tokenizer, settings, progress=progress)
    if keep is not None:
        keep.append(accelerator.unwrap_model(model))
    return {"lr": lr, "seed": seed, "metrics": metrics, "train_features": len(features), **stats,
            "eval_seconds": time.perf_counter() - start}


def evaluate_task(spec: ModelSpec, data: TaskData, settings: FinetuneSettings, cache: ResultCache, *,
                  tokenizer=None, progress: bool = True) -> dict[str, Any]:
    """All runs of one task (from the cache where possible) and their summary at the chosen learning rate."""
    task = data.info.name
    positions = getattr(AutoConfig.from_pretrained(spec.path), "max_position_embeddings", None)
    if positions is not None and settings.max_length > positions:
        raise BertpressError(f"{spec.label} takes at most {positions} tokens but {task} uses max_length "
                             f"{settings.max_length}: lower it (--set {task}.max_length={positions})")
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(spec.path)
    fingerprint = model_fingerprint(spec.path)
    if data.info.kind == "embedding":
        return _embedding_task(spec, data, settings, cache, tokenizer, fingerprint)
    runner: Runner = RUNNERS[data.info.kind](data)
    features = None
    by_lr: dict[float, list[dict[str, Any]]] = {}
    for lr in settings.learning_rates:
        for seed in settings.seeds:
            key = cache.key(fingerprint, task, data.identity, {**settings.run_key(lr, seed), **_device_key()})
            record = cache.get(task, key)
            if record is None:
                if features is None:
                    features = runner.train_features(tokenizer, settings)
                record = _one_run(spec, runner, features, tokenizer, settings, lr, seed, task, progress)
                if process_state().is_main_process:  # every process holds the same (gathered) record
                    cache.put(task, key, record)
                log.info("%s %s lr=%g seed=%d: %s %.2f (%.0fs)", spec.label, task, lr, seed, data.info.score_name,
                         record["metrics"]["score"], record["train_seconds"] + record["eval_seconds"])
            else:
                log.info("%s %s lr=%g seed=%d: %.2f (cached)", spec.label, task, lr, seed, record["metrics"]["score"])
            by_lr.setdefault(lr, []).append(record)
    grid = {lr: summarise(runs)["mean"]["score"] for lr, runs in by_lr.items()}
    best = max(grid, key=lambda lr: grid[lr])
    return {"task": task, "lr": best, "grid": {f"{lr:g}": s for lr, s in grid.items()},
            "settings": settings.model_dump(), **summarise(by_lr[best]), "runs": by_lr[best]}


#: the record written next to a kept fine-tuned model (:func:`finetuned_model`)
FINETUNE_RECORD = "bertpress-finetune.json"


def finetuned_model(spec: ModelSpec, data: TaskData, settings: FinetuneSettings, seed: int, root: Path, *,
                    progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """``spec`` fine-tuned on one task (``settings.lr``, ``seed``) as a saved model directory under ``root``
    (keyed like the result cache: model fingerprint, task data, settings, seed, device), with its dev metrics in
    :data:`FINETUNE_RECORD`; an existing directory is reused. Returns (directory, record)."""
    task = data.info.name
    if data.info.kind not in ("glue", "ner"):
        raise BertpressError(f"{task}: only GLUE-format and CoNLL tasks can fine-tune a kept model: choose one")
    key = ResultCache.key(model_fingerprint(spec.path), task, data.identity,
                          {**settings.run_key(settings.lr, seed), **_device_key()})
    target = root / task / key
    if (target / FINETUNE_RECORD).is_file():
        log.info("%s %s: fine-tuned model from %s", spec.label, task, target)
        return target, json.loads((target / FINETUNE_RECORD).read_text())
    runner: Runner = RUNNERS[data.info.kind](data)
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    kept: list[nn.Module] = []
    record = _one_run(spec, runner, runner.train_features(tokenizer, settings), tokenizer, settings, settings.lr, seed,
                      task, progress, keep=kept)
    record = {"source": str(spec.path), "task": task, "settings": settings.model_dump(), **record}
    if process_state().is_main_process:
        with atomic_dir(target) as tmp:
            kept[0].save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(Path(tmp) / FINETUNE_RECORD, record)
    process_state().wait_for_everyone()
    log.info("%s %s: fine-tuned (%s %.2f on dev), kept at %s", spec.label, task, data.info.score_name,
             record["metrics"]["score"], target)
    return target, record


def _device_key() -> dict[str, Any]:
    """Fine-tuning on a GPU, or split across processes, computes other numbers than one CPU process: its results
    are cached apart (keys of one CPU process are as they always were)."""
    device, processes = eval_device(), process_state().num_processes
    return {**({} if device.type == "cpu" else {"device": device.type}),
            **({"processes": processes} if processes > 1 else {})}


def _embedding_task(spec: ModelSpec, data: TaskData, settings: EmbeddingSettings, cache: ResultCache, tokenizer,
                    fingerprint: str) -> dict[str, Any]:
    """A zero-shot task: one deterministic scoring, cached like a fine-tuning run."""
    task, runner = data.info.name, EmbeddingRunner(data)
    pooling, why = runner.pooling(spec.path, settings)
    key = cache.key(fingerprint, task, data.identity,
                    {**settings.model_dump(exclude={"eval_batch_size"}), "pooling": pooling})
    record = cache.get(task, key)
    if record is None:
        start = time.perf_counter()
        record = {**runner.evaluate_dir(spec.path, tokenizer, settings, pooling), "pooling_from": why,
                  "eval_seconds": time.perf_counter() - start}
        cache.put(task, key, record)
        log.info("%s %s (%s pooling, %s): %.2f (%.0fs)", spec.label, task, pooling, why,
                 record["metrics"]["score"], record["eval_seconds"])
    return {"task": task, "lr": None, "grid": {}, "settings": settings.model_dump(), **summarise([record]),
            "runs": [record]}


def evaluate_model(spec: ModelSpec, tasks: Sequence[TaskData], settings: dict[str, FinetuneSettings],
                   cache: ResultCache, *, progress: bool = True) -> dict[str, dict[str, Any]]:
    """``{task: result}`` for one model, fine-tuned on each task as ``settings`` says (a tagger: scored as it is)."""
    if spec.kind == "tagger":
        check_taggers([spec], [d.info.name for d in tasks])
        return {d.info.name: evaluate_tagger(spec.path, d, settings[d.info.name]) for d in tasks}
    tokenizer = AutoTokenizer.from_pretrained(spec.path)
    return {data.info.name: evaluate_task(spec, data, settings[data.info.name], cache, tokenizer=tokenizer,
                                          progress=progress)
            for data in tasks}
