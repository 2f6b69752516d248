"""XtremeDistil benchmark (issue 17): does task transfer make a better task-agnostic student than task-agnostic
distillation at the same budget?

Packaged teacher (all-MiniLM-L6-v2, 6L-384H) -> 3-layer, 384-wide students that all start from the teacher's layers
1, 3, 6 copied (``init: select``):

* ``copy-1-3-6``: no distillation (what a user gets for free);
* ``tinybert-top-probs``: the quality benchmark's best task-agnostic recipe (hidden + attention-probability MSE on the
  Wikipedia shards, 150 steps x 16 blocks x 128 = 307,200 tokens), rebuilt bit for bit by that benchmark's code;
* ``xtremedistil-<source>``: ``recipes/xtremedistil.yaml`` (source task SST-2 as shipped, or another with
  ``--source``: a pair task reads sentence pairs; teacher fine-tuned on at most 20,000 of its training examples;
  transfer data = Wikipedia sentences or pairs + the task's inputs), its stages sized so that the run sees at most the
  same 307,200 tokens: half in the representation stage, 40% over the five logit stages, 10% over the five labelled
  stages (stage steps from the measured mean example length; early stopping may end stages sooner).

Phases (each resumable; results rewritten after each)::

    python benchmarks/xtremedistil/run.py [--source sst2] [--phases teacher distill evaluate] [--out-dir DIR]

``teacher`` fine-tunes the source-task teacher (cached under ``--out-dir``/cache/teachers) and records its dev
score; ``distill`` trains the XtremeDistil student (resuming from its checkpoints) and rebuilds the two baselines;
``evaluate`` fine-tunes every student (and the teacher) on the tasks held out from the source among RTE, MRPC,
STS-B, CoLA and CoNLL-2003 (default task recipes, 3 seeds) plus zero-shot STS-B and SST-2 (20,000 training
sentences, 1 seed), scores the XtremeDistil task student on its source task's dev set as it is, and writes
``results/<source>/results.{json,md,png}`` (the ``bertpress evaluate`` report) and ``results/phases/source-<source>.json``. Fine-tuning results are cached in
``results/cache`` (committed); entries the quality, CVT and MobileBERT benchmarks already computed for the same
models and settings are reused from their caches.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import shutil
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import torch
import yaml

from bertpress.atomic import atomic_write_json
from bertpress.data.corpus import load_corpus
from bertpress.data.tasks.files import default_data_dir
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.compare import run_compare
from bertpress.evaluate.latency import conditions
from bertpress.evaluate.report import write_report
from bertpress.evaluate.settings import resolve_settings
from bertpress.evaluate.suite import model_spec
from bertpress.evaluate.tasks import load_task
from bertpress.models.teacher import PACKAGED_TEACHER
from bertpress.recipe import recipe_from_dict
from bertpress.train.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
CORPUS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"
PHASES = ("teacher", "distill", "evaluate")
#: the task-agnostic baseline's budget: 150 steps x 16 blocks x 128 tokens (the quality benchmark's screen)
BUDGET_TOKENS = 150 * 16 * 128
SHARES = {"representation": 0.5, "logits": 0.4, "labelled": 0.1}
SST2_CAP = 20_000
HELD_OUT = ("rte", "mrpc", "stsb", "cola", "conll2003", "stsb-zeroshot")
#: source tasks the script knows: the transfer unit their inputs come in
SOURCES = {"sst2": "sentences", "cola": "sentences", "mrpc": "pairs", "rte": "pairs", "stsb": "pairs",
           "conll2003": "sentences"}
SEEDS = [1, 2, 3]
#: caches of earlier benchmarks holding results for the same models and settings (read, copied into ours)
FALLBACK_CACHES = [ROOT / "benchmarks" / "quality" / "results" / "finetune" / "cache",
                   ROOT / "benchmarks" / "cvt" / "results" / "cache",
                   ROOT / "benchmarks" / "mobilebert" / "results" / "cache"]


def quality_module() -> ModuleType:
    """``benchmarks/quality/run.py`` (its baselines and candidate recipes are the baselines here)."""
    spec = importlib.util.spec_from_file_location("quality_run", ROOT / "benchmarks" / "quality" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def base_recipe(out_dir: Path, batch_size: int, source: str = "sst2") -> dict[str, Any]:
    """``recipes/xtremedistil.yaml`` with the benchmark's source task, paths, caches and training-set cap
    (schedule not sized)."""
    recipe = yaml.safe_load((ROOT / "recipes" / "xtremedistil.yaml").read_text())
    recipe["name"] = f"xtremedistil-{source}"
    recipe["output_dir"] = str(out_dir / f"xtremedistil-{source}")
    recipe["teacher"]["source_task"] = {**recipe["teacher"]["source_task"], "task": source,
                                        "settings": {"max_train_examples": SST2_CAP}}
    recipe["data"] = {**recipe["data"], "cache_dir": str(out_dir / "cache"), "unit": SOURCES[source],
                      "sources": [str(default_data_dir() / CORPUS), {"task": source}]}
    recipe["train"] = {**recipe["train"], "batch_size": batch_size, "eval_every": 10, "save_every": 50,
                       "mixed_precision": "no"}  # fp32, as the committed results were measured
    return recipe


def sized_schedule(mean_transfer: float, mean_labelled: float, batch_size: int, num_layers: int,
                   budget: int = BUDGET_TOKENS) -> dict[str, int]:
    """Steps per stage so the run sees at most ``budget`` tokens, split by :data:`SHARES` (``num_layers + 2``
    logit stages and as many labelled ones), given the mean tokens per transfer / labelled example."""
    groups = num_layers + 2
    return {"representation_steps": max(1, math.floor(SHARES["representation"] * budget / (batch_size * mean_transfer))),
            "logit_steps": max(1, math.floor(SHARES["logits"] * budget / (groups * batch_size * mean_transfer))),
            "labelled_steps": max(1, math.floor(SHARES["labelled"] * budget / (groups * batch_size * mean_labelled)))}


def xtremedistil_recipe(out_dir: Path, batch_size: int, source: str) -> dict[str, Any]:
    """The XtremeDistil student's recipe at the budget (reads the transfer and labelled sets to size its stages)."""
    from transformers import AutoTokenizer

    from bertpress.models.teacher import resolve_model
    from bertpress.pipeline import labelled_examples

    recipe = base_recipe(out_dir, batch_size, source)
    parsed = recipe_from_dict(recipe)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(PACKAGED_TEACHER))
    transfer = load_corpus(parsed.data, tokenizer, seed=parsed.seed)
    labelled = labelled_examples(parsed, tokenizer)
    mean_t = transfer.meta["tokens"] / len(transfer.blocks)
    mean_l = float(np.mean((labelled.blocks != tokenizer.pad_token_id).sum(1)))
    recipe["schedule"] = {**recipe["schedule"], **sized_schedule(mean_t, mean_l, batch_size,
                                                                 recipe["student"]["num_layers"])}
    return recipe


def teacher_phase(out_dir: Path, batch_size: int, source: str) -> None:
    """Fine-tune (or find) the source-task teacher; record its dev score."""
    from bertpress.pipeline import source_task_teacher

    path, record = source_task_teacher(recipe_from_dict(base_recipe(out_dir, batch_size, source)), progress=False)
    atomic_write_json(RESULTS / "phases" / f"teacher-{source}.json", {"dir": str(path.relative_to(out_dir)), **record,
                                                             "machine_after": conditions()})
    print(f"[xtremedistil] teacher {source} dev: {record['metrics']}", flush=True)


def baselines(out_dir: Path) -> dict[str, Path]:
    """The two baselines, built (or found) with the quality benchmark's code under ``out_dir/quality``."""
    quality = quality_module()
    qdir = out_dir / "quality"
    copy = quality.make_baseline("copy-1-3-6", qdir)
    args = SimpleNamespace(steps=150, batch_size=16, seed=42, out_dir=qdir)
    summary = quality.run_distillation(quality.make_recipe("tinybert-top-probs", args))
    return {"copy-1-3-6": copy, "tinybert-top-probs": Path(summary["recipe"]["output_dir"])}


def distill_phase(out_dir: Path, batch_size: int, source: str) -> None:
    """Train (resume, or reuse) the XtremeDistil student and build the baselines; record what each cost."""
    from bertpress.pipeline import distill

    run = out_dir / f"xtremedistil-{source}"
    if not (run / "bertpress.json").is_file():
        recipe = xtremedistil_recipe(out_dir, batch_size, source)
        resume = latest_checkpoint(run / "checkpoints") is not None
        print(f"[xtremedistil] {'resuming' if resume else 'starting'}: {recipe['schedule']}", flush=True)
        distill(recipe, resume=resume, overwrite=not resume)
    summary = json.loads((run / "bertpress.json").read_text())
    record = {run.name: {key: summary.get(key) for key in (
        "steps", "tokens_seen", "train_time_s", "train_cpu_s", "early_stopping", "labelled")}
        | {"stages": [(s["name"], s["steps"]) for s in summary["stages"]], "schedule": summary["recipe"]["schedule"]}}
    for name, path in baselines(out_dir).items():
        done = path / "bertpress.json"
        s = json.loads(done.read_text()) if done.is_file() else {}
        record[name] = {"tokens_seen": s.get("tokens_seen", 0), "train_time_s": s.get("train_time_s", 0.0)}
    record["budget_tokens"] = BUDGET_TOKENS
    record["machine_after"] = conditions()
    atomic_write_json(RESULTS / "phases" / f"distill-{source}.json", record)
    print(f"[xtremedistil] distill: {record}", flush=True)


class SeededCache(ResultCache):
    """Our cache, falling back to earlier benchmarks' caches (a hit there is copied here, so it is committed)."""

    def get(self, task: str, key: str) -> dict[str, Any] | None:
        found = super().get(task, key)
        if found is None and self.read:
            for other in FALLBACK_CACHES:
                source = other / task / f"{key}.json"
                if source.is_file():
                    self._path(task, key).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(source, self._path(task, key))
                    return super().get(task, key)
        return found


def source_score(out_dir: Path, source: str) -> dict[str, Any]:
    """Dev metrics of the XtremeDistil task student on its source task as it is (no further training)."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from bertpress.evaluate.suite import RUNNERS

    path = out_dir / f"xtremedistil-{source}" / "task-student"
    data = load_task(source, default_data_dir())
    auto = AutoModelForTokenClassification if data.info.kind == "ner" else AutoModelForSequenceClassification
    return RUNNERS[data.info.kind](data).evaluate(auto.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path),
                                                  resolve_settings([source])[source], progress=False)


def evaluate_phase(out_dir: Path, command: str, with_teacher: bool, source: str) -> None:
    """Fine-tune every student (and the teacher) on the tasks held out from ``source`` and SST-2; write the report."""
    paths = {**baselines(out_dir), f"xtremedistil-{source}": out_dir / f"xtremedistil-{source}"}
    students = [model_spec(f"{label}={path}") for label, path in paths.items()]
    teacher = model_spec(f"all-MiniLM-L6-v2={PACKAGED_TEACHER}") if with_teacher else None
    names = [t for t in HELD_OUT if t != source] + ["sst2"]
    tasks = [load_task(t, default_data_dir(), *(() if t == "conll2003" else ("tsv",))) for t in names]
    settings = resolve_settings(names, [f"{t}.seeds={json.dumps(SEEDS)}" for t in names if t in HELD_OUT
                                        and t != "stsb-zeroshot"] + [f"sst2.max_train_examples={SST2_CAP}"])
    report = run_compare(students, tasks, settings, SeededCache(RESULTS / "cache"), teacher=teacher, latency=False,
                         data_dir=default_data_dir(), command=command, progress=False)
    write_report(report, RESULTS / source)
    teacher_record = json.loads((RESULTS / "phases" / f"teacher-{source}.json").read_text())
    atomic_write_json(RESULTS / "phases" / f"source-{source}.json", {
        "task": source, "teacher_finetuned": teacher_record["metrics"], "task_student": source_score(out_dir, source),
        "machine_after": conditions()})
    print((RESULTS / source / "results.md").read_text().split("\n\n")[0], flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--source", choices=list(SOURCES), default="sst2", help="the source task")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-teacher", action="store_true", help="evaluate: leave the teacher out (no retention column)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "xtremedistil-bench")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    command = shlex.join(["python", "benchmarks/xtremedistil/run.py", *sys.argv[1:]])
    for phase in args.phases:
        if phase == "teacher":
            teacher_phase(args.out_dir, args.batch_size, args.source)
        elif phase == "distill":
            distill_phase(args.out_dir, args.batch_size, args.source)
        else:
            evaluate_phase(args.out_dir, command, not args.no_teacher, args.source)


if __name__ == "__main__":
    main()
