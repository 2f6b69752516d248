"""Compare mode: fine-tune a teacher and students with the same settings and put them side by side.

Per model: each task's mean score (and spread over seeds), the average over tasks, retention (% of the teacher's
average), parameters, size on disk, CPU latency at batch 1 and 32 and the speed-up over the teacher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bertpress import __version__
from bertpress.evaluate.cache import ResultCache, model_fingerprint
from bertpress.evaluate.latency import conditions, footprint, measure_latency
from bertpress.evaluate.settings import FinetuneSettings
from bertpress.evaluate.suite import ModelSpec, evaluate_model
from bertpress.evaluate.tasks import TaskData

log = logging.getLogger(__name__)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def model_row(spec: ModelSpec, role: str, results: dict[str, dict[str, Any]], foot: dict[str, float],
              latency: dict[str, dict[str, float]] | None) -> dict[str, Any]:
    """One model's entry in the report (scores, footprint, latency); retention and speed-up are added later."""
    scores = [r["mean"]["score"] for r in results.values()]
    return {"label": spec.label, "path": str(spec.path), "role": role, "fingerprint": model_fingerprint(spec.path),
            **foot, "latency": latency, "average": sum(scores) / len(scores), "tasks": results}


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
    lat_conditions = None
    if latency:
        log.info("measuring CPU latency of %d model(s)", len(specs))
        lat_conditions = conditions()
        lat = list(measure_latency([s.path for s in specs]))
        lat_conditions["load_average_after"] = conditions()["load_average"]
    rows = [model_row(s, r, res, footprint(s.path), la) for s, r, res, la in zip(specs, roles, results, lat, strict=True)]
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
        "latency_setup": {"batch_sizes": [1, 32], "seq_len": 128, **(lat_conditions or {})} if latency else None,
        "models": rows,
    }
