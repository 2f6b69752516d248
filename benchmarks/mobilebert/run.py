"""MobileBERT benchmark (issue 15): is a bottleneck student worth it against a BERT-layout student of the same size?

From the packaged teacher (all-MiniLM-L6-v2, 22.7M parameters) on the Wikipedia shards, at one distillation budget
in tokens (``--steps`` x ``--batch-size`` x 128):

* ``mobilebert-progressive``: ``recipes/mobilebert-6l.yaml`` (6 x 384 blocks, 96-wide bottleneck, 12 heads, 4 FFNs,
  7.3M parameters), progressive transfer (one stage per layer, lower layers slowed) then a final stage on everything;
* ``mobilebert-all-layers``: the same student and objective, every layer at once for the same number of steps;
* ``mobilebert-untrained``: the same student with only its embeddings initialised (no distillation: the floor);
* ``bert-4x192``: a BERT-layout student of about the same size (4 layers x 192, 12 heads, FFN 768: 7.7M parameters,
  ETD-Impt extraction of teacher layers 1, 3, 5, 6; 4 x 256 would have 11M), distilled with the shipped ``tinybert``
  objective (attention probabilities, mapping onto the extracted layers) for the same budget.

Phases (each resumable; results rewritten after each)::

    python benchmarks/mobilebert/run.py [--phases distill evaluate] [--steps 1500] [--batch-size 32]

``distill`` trains the students under ``--out-dir`` (``runs/mobilebert-bench``; resumes from checkpoints) and records
parameters, size on disk, held-out distillation loss and training cost in ``results/phases/distill.json``;
``evaluate`` fine-tunes every student and the teacher on STS-B, MRPC and CoLA (default task recipes, seeds 1-3;
cached in ``results/cache``, committed) plus zero-shot STS-B, then times every model single-threaded (batch 1 and
32, 128 tokens: the on-device proxy) and writes ``results/results.{json,md,png}`` with ``bertpress evaluate``'s
report (the plot: average score against batch-1 latency). ONNX latency and parity per student come from
``bertpress export`` into ``results/phases/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from bertpress.atomic import atomic_write_json
from bertpress.data.tasks.files import default_data_dir
from bertpress.errors import BertpressError
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.compare import run_compare
from bertpress.evaluate.latency import conditions
from bertpress.evaluate.report import write_report
from bertpress.evaluate.settings import resolve_settings
from bertpress.evaluate.suite import evaluate_model, model_spec
from bertpress.evaluate.tasks import load_task
from bertpress.models.teacher import PACKAGED_TEACHER
from bertpress.train.checkpoint import latest_checkpoint
from bertpress.train.run import distill

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
CORPUS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"
TASKS = ["stsb", "mrpc", "cola", "stsb-zeroshot"]
SEEDS = [1, 2, 3]
PHASES = ("distill", "evaluate")
STUDENTS = ("mobilebert-progressive", "mobilebert-all-layers", "bert-4x192")


def students(steps: int, batch_size: int) -> dict[str, dict[str, Any]]:
    """Recipe of every student at the same budget (``steps`` optimizer steps of ``batch_size`` blocks)."""
    mobile = yaml.safe_load((ROOT / "recipes" / "mobilebert-6l.yaml").read_text())
    layers = 6
    final = steps // 3  # progressive: two thirds of the budget layer by layer, one third on everything
    per_layer = (steps - final) // layers
    progressive = {**mobile, "schedule": {**mobile["schedule"], "steps_per_layer": per_layer,
                                          "final_steps": steps - per_layer * layers}}
    at_once = {k: v for k, v in mobile.items() if k != "schedule"} | {
        "train": {**mobile["train"], "max_steps": steps}}
    bert = {"teacher": mobile["teacher"], "data": mobile["data"],
            "student": {"num_layers": 4, "hidden_size": 192, "num_heads": 12, "intermediate_size": 768,
                        "init": "etd-impt", "init_args": {"layers": [1, 3, 5, 6]}},
            "objective": {"name": "tinybert", "attention_on": "probabilities"}, "mapping": {"layers": [1, 3, 5, 6]},
            "train": {**mobile["train"], "max_steps": steps}}
    out = dict(zip(STUDENTS, (progressive, at_once, bert), strict=True))
    for r in out.values():
        r["data"] = {**r["data"], "sources": [str(default_data_dir() / CORPUS)]}
        r["train"] = {**r["train"], "mixed_precision": "no"}  # fp32, as the committed results were measured
        r["train"] = {**r["train"], "batch_size": batch_size}
    return out


def distill_phase(out_dir: Path, steps: int, batch_size: int) -> None:
    """Train (resume, or reuse) every student; record size, held-out loss and cost."""
    record_path = RESULTS / "phases" / "distill.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for name, recipe in students(steps, batch_size).items():
        run = out_dir / name
        recipe = {**recipe, "name": name, "output_dir": str(run)}
        if not (run / "bertpress.json").is_file():
            resume = latest_checkpoint(run / "checkpoints") is not None
            print(f"[mobilebert] {name}: {'resuming' if resume else 'starting'} ({steps} steps)", flush=True)
            distill(recipe, resume=resume, overwrite=not resume)
        summary = json.loads((run / "bertpress.json").read_text())
        record[name] = {"parameters": summary["student"]["parameters"], "steps": summary["steps"],
                        "tokens_seen": summary["tokens_seen"], "final": summary["final"],
                        "train_time_s": summary["train_time_s"], "train_cpu_s": summary["train_cpu_s"],
                        "size_mb": round((run / "student" / "model.safetensors").stat().st_size / 1e6, 2),
                        "stages": [(s["name"], s["steps"]) for s in summary["stages"]]}
        record["machine_after"] = conditions()
        atomic_write_json(record_path, record)
        print(f"[mobilebert] {name}: held-out {summary['final']}", flush=True)


def untrained(out_dir: Path) -> Path:
    """The MobileBERT student with only its embeddings from the teacher (saved, not distilled)."""
    path = out_dir / "mobilebert-untrained"
    if not (path / "config.json").is_file():
        from bertpress.init import InitContext, initialise
        from bertpress.train.build import build_run

        recipe = yaml.safe_load((ROOT / "recipes" / "mobilebert-6l.yaml").read_text())
        run = build_run({**recipe, "output_dir": str(path)})
        initialise("teacher-embeddings", InitContext(run.teacher, run.student, run.recipe.seed))
        run.student.save_pretrained(path)
        run.tokenizer.save_pretrained(path)
    return path


def evaluate_phase(out_dir: Path, command: str) -> None:
    """Fine-tune everything (cached, all cores), then time single-threaded and write the report."""
    paths = {"all-MiniLM-L6-v2": PACKAGED_TEACHER, **{n: out_dir / n for n in STUDENTS},
             "mobilebert-untrained": untrained(out_dir)}
    specs = [model_spec(f"{label}={path}") for label, path in paths.items()]
    data = [load_task(t, default_data_dir()) for t in TASKS]
    settings = resolve_settings(TASKS, [f"{t}.seeds={json.dumps(SEEDS)}" for t in TASKS if t != "stsb-zeroshot"])
    cache = ResultCache(RESULTS / "cache")
    for spec in specs:
        evaluate_model(spec, data, settings, cache, progress=False)
    torch.set_num_threads(1)  # the on-device proxy: one thread, as MobileBERT's paper times a phone core
    report = run_compare(specs[1:], data, settings, cache, teacher=specs[0], data_dir=default_data_dir(),
                         command=command, progress=False)
    write_report(report, RESULTS)
    from bertpress.export import export_model

    exported = {}
    for label, path in list(paths.items())[1:]:
        try:
            export_model(path, out_dir / "onnx" / label, threads=1)
        except BertpressError as e:  # a format outside its tolerance is a result here (export.json has it all)
            print(f"[mobilebert] {label}: {e}", flush=True)
        r = json.loads((out_dir / "onnx" / label / "export.json").read_text())
        exported[label] = {"parity_ok": r["parity_ok"], "parity": r["parity"], "latency_ms": r["latency_ms"]}
    atomic_write_json(RESULTS / "phases" / "export.json", {"models": exported, "machine": conditions()})
    print((RESULTS / "results.md").read_text().split("\n\n")[0], flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps per student (the budget)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "mobilebert-bench")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    command = shlex.join(["python", "benchmarks/mobilebert/run.py", *sys.argv[1:]])
    for phase in args.phases:
        if phase == "distill":
            distill_phase(args.out_dir, args.steps, args.batch_size)
        else:
            evaluate_phase(args.out_dir, command)


if __name__ == "__main__":
    main()
