"""NAS-BERT benchmark (issue 16): does one supernet run give students as good as distilling each shape separately?

Packaged teacher (all-MiniLM-L6-v2, 6L-384H) on the Wikipedia shards, ``recipes/nas-supernet.yaml`` (84 shapes,
MiniLM last-layer relations, sandwich rule):

* ``supernet``: the supernet distilled for ``--steps`` x ``--batch-size`` x 128 tokens;
* ``targets`` (:data:`TARGETS`, spanning more than 3x in latency): each extracted from the supernet, and each
  distilled *separately* from its ETD-Impt extraction of the teacher (the shipped ETD default: layers ``skip``) with
  the same objective, for an equal share of the supernet's training time (calibrated per shape: steps = share /
  seconds per step measured after the first steps), so the separate route's total compute equals the supernet run's;
* ``search``: ``bertpress search-arch`` with one parameter budget per target and the latency table (batch 1, 128
  tokens, 1 thread): the shape the supernet itself picks for each budget.

Phases (each resumable; results rewritten after each)::

    python benchmarks/nas/run.py [--phases supernet separate search evaluate] [--steps 300] [--batch-size 16]

``evaluate`` scores every student (both routes and the search's picks) and the teacher on zero-shot STS-B and
STS-B fine-tuning (default recipe, seeds 1-3, cached in ``results/cache``), times them single-threaded, and writes
``results/results.{json,md,png}`` (``bertpress evaluate``'s report; the plot: score against batch-1 latency) and
``results/phases/*.json`` (costs, held-out losses, the latency model's error).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoConfig, AutoModel, AutoTokenizer

from bertpress.atomic import atomic_write_json
from bertpress.data.tasks.files import default_data_dir
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.compare import run_compare
from bertpress.evaluate.latency import conditions
from bertpress.evaluate.report import write_report
from bertpress.evaluate.settings import resolve_settings
from bertpress.evaluate.suite import evaluate_model, model_spec
from bertpress.evaluate.tasks import load_task
from bertpress.models.student import StudentShape, student_config
from bertpress.models.teacher import PACKAGED_TEACHER, resolve_model
from bertpress.nas.space import Arch
from bertpress.search.arch import Budget, load_supernet_run, search_arch
from bertpress.train.checkpoint import latest_checkpoint
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
CORPUS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"
PHASES = ("supernet", "separate", "search", "evaluate")
TASKS = ["stsb", "stsb-zeroshot"]
SEEDS = [1, 2, 3]
#: shapes compared route against route (all in the shipped space)
TARGETS = [Arch(6, 384, 12, 1536), Arch(4, 384, 12, 1024), Arch(4, 256, 8, 1024), Arch(2, 192, 6, 512)]
#: calibration steps; seconds per step are measured from the train log after the first WARMUP_STEPS (the first
#: run's whole-run average over 6 steps overestimated them 2.6x, giving the separate route 0.38x the compute)
CALIBRATION_STEPS = 12
WARMUP_STEPS = 4


def steady_seconds_per_step(metrics: Path) -> float:
    """Seconds per step between the train-log records after :data:`WARMUP_STEPS` and the last one."""
    records = [r for r in read_metrics(metrics, "train") if r["step"] >= WARMUP_STEPS]
    first, last = records[0], records[-1]
    if last["step"] <= first["step"]:
        raise ValueError(f"{metrics}: too few logged steps to calibrate")
    return (last["time"] - first["time"]) / (last["step"] - first["step"])


def _recipe(out_dir: Path, name: str, steps: int, batch_size: int) -> dict[str, Any]:
    recipe = yaml.safe_load((ROOT / "recipes" / "nas-supernet.yaml").read_text())
    recipe["name"], recipe["output_dir"] = name, str(out_dir / name)
    recipe["data"] = {**recipe["data"], "sources": [str(default_data_dir() / CORPUS)],
                      "cache_dir": str(out_dir / "cache")}
    recipe["train"] = {**recipe["train"], "max_steps": steps, "batch_size": batch_size, "eval_every": 100,
                       "save_every": 100, "mixed_precision": "no"}
    return recipe


def separate_recipe(out_dir: Path, arch: Arch, steps: int, batch_size: int) -> dict[str, Any]:
    """The same objective and data, one student of ``arch`` from its ETD-Impt extraction (ETD's default layers)."""
    recipe = _recipe(out_dir, f"separate-{arch.name}", steps, batch_size)
    recipe.pop("supernet")
    recipe["student"] = {"num_layers": arch.layers, "hidden_size": arch.hidden, "num_heads": arch.heads,
                         "intermediate_size": arch.ffn, "init": "etd-impt", "init_args": {"importance_batches": 8}}
    return recipe


def _run(recipe: dict[str, Any]) -> dict[str, Any]:
    run = Path(recipe["output_dir"])
    if not (run / "bertpress.json").is_file():
        resume = latest_checkpoint(run / "checkpoints") is not None
        print(f"[nas] {recipe['name']}: {'resuming' if resume else 'starting'} ({recipe['train']['max_steps']} steps)",
              flush=True)
        distill(recipe, resume=resume, overwrite=not resume)
    return json.loads((run / "bertpress.json").read_text())


def _record(name: str, value: dict[str, Any]) -> None:
    path = RESULTS / "phases" / f"{name}.json"
    atomic_write_json(path, {**value, "machine_after": conditions()})


def supernet_phase(out_dir: Path, steps: int, batch_size: int) -> None:
    s = _run(_recipe(out_dir, "supernet", steps, batch_size))
    _record("supernet", {"steps": s["steps"], "tokens_seen": s["tokens_seen"], "train_time_s": s["train_time_s"],
                         "train_cpu_s": s["train_cpu_s"], "final": s["final"], "supernet": s["supernet"]})


def separate_phase(out_dir: Path, batch_size: int) -> None:
    """Each target distilled alone for an equal share of the supernet's training time."""
    total = json.loads((RESULTS / "phases" / "supernet.json").read_text())["train_time_s"]
    record: dict[str, Any] = {"supernet_train_time_s": total, "share_s": total / len(TARGETS), "students": {}}
    for arch in TARGETS:
        probe = separate_recipe(out_dir / "calibration", arch, CALIBRATION_STEPS, batch_size)
        probe["train"].update(eval_every=0, save_every=0, log_every=1)
        start = time.perf_counter()
        _run(probe)
        per_step = steady_seconds_per_step(Path(probe["output_dir"]) / "metrics.jsonl")
        steps = max(1, round(record["share_s"] / per_step))
        s = _run(separate_recipe(out_dir, arch, steps, batch_size))
        record["students"][arch.name] = {"seconds_per_step": round(per_step, 3), "steps": s["steps"],
                                         "tokens_seen": s["tokens_seen"], "train_time_s": s["train_time_s"],
                                         "final": s["final"], "calibration_wall_s": round(time.perf_counter() - start)}
        _record("separate", record)


def search_phase(out_dir: Path) -> None:
    """The supernet's own picks per target budget, and every target extracted as is."""
    budgets = [Budget(params=_params(arch)) for arch in TARGETS]
    torch.set_num_threads(1)
    report = search_arch(out_dir / "supernet", budgets, out_dir / "search",
                         latency={"batch": 1, "seq": 128, "threads": 1, "rounds": 20})
    torch.set_num_threads(os.cpu_count() or 1)
    net = load_supernet_run(out_dir / "supernet").supernet  # ranked as the run ranked it
    tok = AutoTokenizer.from_pretrained(out_dir / "supernet" / "student")
    for arch in TARGETS:
        target = out_dir / "extracted" / arch.name
        if not (target / "config.json").is_file():
            net.extract(arch).save_pretrained(target)
            tok.save_pretrained(target)
    _record("search", {"picks": report["picks"], "latency": report["latency"],
                       "targets": [r for r in report["archs"] if r["arch"] in {a.name for a in TARGETS}]})


def _params(arch: Arch) -> int:
    config = student_config(AutoConfig.from_pretrained(resolve_model(PACKAGED_TEACHER)),
                            StudentShape(arch.layers, arch.hidden, arch.heads, arch.ffn))
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return sum(p.numel() for p in model.parameters())


def evaluate_phase(out_dir: Path, command: str) -> None:
    paths: dict[str, Any] = {"all-MiniLM-L6-v2": PACKAGED_TEACHER}
    for arch in TARGETS:
        paths[f"supernet-{arch.name}"] = out_dir / "extracted" / arch.name
        paths[f"separate-{arch.name}"] = out_dir / f"separate-{arch.name}"
    for pick in json.loads((RESULTS / "phases" / "search.json").read_text())["picks"]:
        if pick.get("arch") and f"supernet-{pick['arch']}" not in paths:
            paths[f"picked-{pick['arch']}"] = pick["dir"]
    specs = [model_spec(f"{label}={path}") for label, path in paths.items()]
    data = [load_task(t, default_data_dir()) for t in TASKS]
    settings = resolve_settings(TASKS, [f"{t}.seeds={json.dumps(SEEDS)}" for t in TASKS if t != "stsb-zeroshot"])
    cache = ResultCache(RESULTS / "cache")
    for spec in specs:
        evaluate_model(spec, data, settings, cache, progress=False)
    torch.set_num_threads(1)
    report = run_compare(specs[1:], data, settings, cache, teacher=specs[0], data_dir=default_data_dir(),
                         command=command, progress=False)
    write_report(report, RESULTS)
    print((RESULTS / "results.md").read_text().split("\n\n")[0], flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--steps", type=int, default=300, help="supernet optimizer steps (the budget)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "nas-bench")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    command = shlex.join(["python", "benchmarks/nas/run.py", *sys.argv[1:]])
    for phase in args.phases:
        if phase == "supernet":
            supernet_phase(args.out_dir, args.steps, args.batch_size)
        elif phase == "separate":
            separate_phase(args.out_dir, args.batch_size)
        elif phase == "search":
            search_phase(args.out_dir)
        else:
            evaluate_phase(args.out_dir, command)


if __name__ == "__main__":
    main()
