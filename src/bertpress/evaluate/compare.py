"""Compare mode: fine-tune a teacher and students with the same settings and put them side by side.

Per model: each task's mean score (and spread over seeds), the average over tasks, retention (% of the teacher's
average), parameters, size on disk, CPU latency at batch 1 and 32 and the speed-up over the teacher.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bertpress import __version__
from bertpress.evaluate.cache import ResultCache, model_fingerprint
from bertpress.evaluate.latency import conditions, footprint, measure_latency, sentence_latency
from bertpress.evaluate.settings import FinetuneSettings
from bertpress.evaluate.suite import ModelSpec, evaluate_model
from bertpress.evaluate.tasks import TaskData
from bertpress.train.run import process_state

log = logging.getLogger(__name__)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


#: Per-sentence latency is measured on this many dev sentences of an NER task.
SENTENCE_LATENCY_SENTENCES = 200


def model_row(spec: ModelSpec, role: str, results: dict[str, dict[str, Any]], foot: dict[str, float],
              latency: dict[str, dict[str, float]] | None) -> dict[str, Any]:
    """One model's entry in the report (scores, footprint, latency, training cost); retention and speed-up are
    added later."""
    scores = [r["mean"]["score"] for r in results.values()]
    training = training_cost(spec)
    finetune = {task: {k: sum(r[f"train_{k}"] for r in res["runs"]) / len(res["runs"]) for k in ("cpu_seconds", "tokens")}
                for task, res in results.items()
                if res["lr"] is not None and all("train_cpu_seconds" in r for r in res["runs"])}
    if finetune:  # per task, the mean over its seeds at the chosen learning rate
        training = {**(training or {}), "finetune": finetune}
    return {"label": spec.label, "path": str(spec.path), "role": role, "kind": spec.kind,
            "fingerprint": model_fingerprint(spec.path), **foot, "latency": latency,
            "average": sum(scores) / len(scores), "tasks": results, "training": training}


def training_cost(spec: ModelSpec) -> dict[str, Any] | None:
    """What making the model cost, where its directory records it: a distilled student's distillation
    (``bertpress.json``), a tagger's whole training; ``None`` otherwise (e.g. a pretrained teacher)."""
    if spec.kind == "tagger":
        from bertpress.baselines.cvt import CVTTagger

        i = CVTTagger.load(spec.path).info
        return {"what": "training", "cpu_seconds": i["cpu_seconds"], "wall_seconds": i["train_seconds"],
                "tokens": i["labeled_tokens"] + i["unlabeled_tokens"]}
    summary = spec.path / "bertpress.json"
    if not summary.is_file():
        return None
    try:
        s = json.loads(summary.read_text())
        return {"what": "distillation", "cpu_seconds": s.get("train_cpu_s"), "wall_seconds": s["train_time_s"],
                "tokens": s["tokens_seen"]}
    except (ValueError, KeyError, TypeError):
        return None


def _footprint(spec: ModelSpec) -> dict[str, float]:
    if spec.kind == "tagger":
        from bertpress.baselines.cvt import CVTTagger

        return {"parameters": CVTTagger.load(spec.path).parameters,
                "size_mb": (spec.path / "tagger.pt").stat().st_size / 1e6}
    return footprint(spec.path)


def add_relative(rows: list[dict[str, Any]], teacher: dict[str, Any]) -> None:
    """Retention (% of the teacher's score, average and per task) and speed-up (teacher time / model time)."""
    for row in rows:
        row["retention"] = 100 * row["average"] / teacher["average"] if teacher["average"] else None
        row["task_retention"] = {t: 100 * r["mean"]["score"] / teacher["tasks"][t]["mean"]["score"]
                                 if teacher["tasks"][t]["mean"]["score"] else None for t, r in row["tasks"].items()}
        if row["latency"] and teacher["latency"]:
            row["speedup"] = {b: _ratio(teacher["latency"][b]["median_ms"], v["median_ms"])
                              for b, v in row["latency"].items()}


def run_compare(models: Sequence[ModelSpec], tasks: Sequence[TaskData], settings: dict[str, FinetuneSettings],
                cache: ResultCache, *, teacher: ModelSpec | None = None, latency: bool = True,
                data_dir: Path | None = None, command: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``teacher`` (if any) and ``models`` on ``tasks`` and build the report dict."""
    start = time.perf_counter()
    specs = ([teacher] if teacher else []) + list(models)
    roles = (["teacher"] if teacher else []) + ["student" if teacher else "model"] * len(models)
    results = []
    for spec in specs:
        log.info("evaluating %s (%s) on %s", spec.label, spec.path, ", ".join(d.info.name for d in tasks))
        results.append(evaluate_model(spec, tasks, settings, cache, progress=progress))
    lat: list[dict[str, Any] | None] = [None] * len(specs)
    per_sentence: list[dict[str, float] | None] = [None] * len(specs)
    lat_conditions = None
    ner = next((d for d in tasks if d.info.kind == "ner"), None)
    if latency and process_state().is_main_process:  # one process times; only the main one writes the report
        log.info("measuring CPU latency of %d model(s)", len(specs))
        lat_conditions = conditions()
        encoders = [i for i, s in enumerate(specs) if s.kind == "encoder"]
        for i, la in zip(encoders, measure_latency([specs[i].path for i in encoders]), strict=True):
            lat[i] = la
        if ner is not None:  # what tagging one sentence costs, encoders and taggers alike
            sentences = [s.tokens for s in ner.dev["dev"][:SENTENCE_LATENCY_SENTENCES]]
            per_sentence = list(sentence_latency([(s.kind, s.path) for s in specs], sentences))
        lat_conditions["load_average_after"] = conditions()["load_average"]
    rows = [model_row(s, r, res, _footprint(s), la) for s, r, res, la in zip(specs, roles, results, lat, strict=True)]
    for row, ps in zip(rows, per_sentence, strict=True):
        if ps is not None:
            row["sentence_latency"] = ps
    if teacher:
        add_relative(rows, rows[0])
    return {
        "bertpress_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "wall_seconds": time.perf_counter() - start,
        "data_dir": str(data_dir) if data_dir else None,
        "teacher": teacher.label if teacher else None,
        "tasks": [{"name": d.info.name, "title": d.info.title, "score": d.info.score_name, "sources": d.sources,
                   "train_examples": len(d.train), "dev_examples": {k: len(v) for k, v in d.dev.items()},
                   "settings": settings[d.info.name].model_dump()} for d in tasks],
        "processes": process_state().num_processes,
        "latency_setup": {"batch_sizes": [1, 32], "seq_len": 128, **(lat_conditions or {}),
                          **({"sentences": SENTENCE_LATENCY_SENTENCES, "sentence_task": ner.info.name} if ner else {})}
        if latency else None,
        "models": rows,
    }


#: ``bertpress evaluate``'s default tasks: the small GLUE set (SST-2 capped by its default recipe)
DEFAULT_TASKS = ("rte", "mrpc", "stsb", "cola", "sst2")


def evaluate_models(models: Sequence[str | Path], tasks: Sequence[str] = DEFAULT_TASKS, *,
                    teacher: str | Path | None = None, data_dir: str | Path | None = None,
                    overrides: Sequence[str] = (), glue_source: str = "auto", latency: bool = False,
                    cache_dir: str | Path | None = None, recompute: bool = False,
                    output_dir: str | Path | None = None, command: str | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """``bertpress evaluate`` from Python: fine-tune ``models`` (``PATH`` or ``LABEL=PATH``) and the optional
    ``teacher`` on ``tasks`` with the default task recipes plus ``overrides`` (``KEY=VALUE`` / ``TASK.KEY=VALUE``);
    returns the report (and writes ``results.{json,md}`` and ``tensorboard/`` to ``output_dir`` when given; under
    ``accelerate launch`` every process fine-tunes its share and the main process writes).
    Results are cached (``cache_dir``, default ``$BERTPRESS_CACHE/evaluate``); ``recompute`` ignores the cache."""
    from bertpress.data.tasks.files import resolve_data_dir
    from bertpress.errors import BertpressError
    from bertpress.evaluate.report import write_report, write_tensorboard
    from bertpress.evaluate.settings import resolve_settings
    from bertpress.evaluate.suite import check_taggers, model_spec
    from bertpress.evaluate.tasks import load_task, parse_tasks

    specs = [model_spec(str(m)) for m in models]
    teacher_spec = model_spec(str(teacher)) if teacher else None
    if not specs and not teacher_spec:
        raise BertpressError("no model to evaluate: give one or more model directories (and a teacher to compare)")
    labels = [m.label for m in ([teacher_spec] if teacher_spec else []) + specs]
    if len(set(labels)) != len(labels):
        raise BertpressError(f"two models share the label {next(x for x in labels if labels.count(x) > 1)!r}: "
                             "name them with LABEL=DIR")
    names = parse_tasks(list(tasks))
    check_taggers([*specs, *([teacher_spec] if teacher_spec else [])], names)
    settings = resolve_settings(names, list(overrides))
    root = resolve_data_dir(data_dir)
    data = [load_task(t, root, glue_source) for t in names]
    start = time.perf_counter()
    report = run_compare(specs, data, settings, ResultCache(Path(cache_dir) if cache_dir else None, read=not recompute),
                         teacher=teacher_spec, latency=latency, data_dir=root, command=command, progress=progress)
    report["wall_seconds"] = time.perf_counter() - start
    if output_dir is not None and process_state().is_main_process:
        report["written"] = [str(p) for p in (*write_report(report, Path(output_dir)),
                                              write_tensorboard(report, Path(output_dir)))]
    return report
