"""Quality benchmark on one GPU (issue 12, item 5): the largest distillation of the shipped ``recipes/tinybert-3l.yaml``
that fits a time budget, then the default evaluation of the student, of the same teacher layers copied without
distillation, and of the teacher. Run by ``benchmarks/quality/gpu.sh`` (see there); its numbers are reported apart
from the CPU ones.

1. The teacher travels in bf16 (the device tool carries 64 MiB); it is restored to fp32 first.
2. A 30-step calibration run measures tokens/s at the batch size (its last third, past the warm-up and with no
   evaluation inside); the main run takes the steps that fit
   ``--budget-s`` at that rate (bf16 autocast, linear warm-up/decay over exactly those steps).
3. Evaluation (on the GPU when there is one): zero-shot STS-B, and STS-B, RTE and MRPC fine-tuning with the default
   task recipes, 3 seeds each.

    python benchmarks/quality/gpu_run.py --teacher DIR --out DIR [--budget-s 300 --batch-size 256 --lr 5e-4]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoModel, AutoTokenizer

from bertpress.data.tasks.files import default_data_dir
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.compare import run_compare
from bertpress.evaluate.latency import conditions
from bertpress.evaluate.report import write_report
from bertpress.evaluate.settings import resolve_settings
from bertpress.evaluate.suite import ModelSpec
from bertpress.evaluate.tasks import load_task
from bertpress.init import InitContext, initialise
from bertpress.models.sentence_stack import copy_sentence_stack
from bertpress.train.build import build_run
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tinybert-3l.yaml"
CORPUS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"
TASKS = ("stsb-zeroshot", "stsb", "rte", "mrpc")


def fp32_teacher(src: Path, dst: Path) -> Path:
    """The carried bf16 teacher as an fp32 model directory (with its tokenizer and sentence-transformers stack)."""
    model = AutoModel.from_pretrained(src).float()
    model.config.torch_dtype = "float32"
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    copy_sentence_stack(src, dst, model.config.hidden_size)
    return dst


def recipe(teacher: Path, out: Path, steps: int, args: argparse.Namespace, *, calibrate: bool = False
           ) -> dict[str, Any]:
    """The shipped tinybert-3l recipe at this machine's batch size, precision and step count (``calibrate``: no
    evaluation inside the run, so the logged rate is the training rate)."""
    r = yaml.safe_load(RECIPE.read_text())
    r.update(name="quality-gpu", output_dir=str(out))
    r["teacher"] = {"name_or_path": str(teacher)}
    r["data"] = {**r["data"], "sources": [str(default_data_dir() / CORPUS)], "max_validation_blocks": 256,
                 "cache_dir": str(out.parent / "cache")}
    r["train"] = {**r["train"], "max_steps": steps, "batch_size": args.batch_size, "lr": args.lr,
                  "mixed_precision": "bf16" if torch.cuda.is_available() else "no",
                  "eval_every": 0 if calibrate else max(1, steps // 5), "save_every": 0,
                  "log_every": max(1, steps // 3) if calibrate else max(1, min(50, steps // 10)), "num_workers": 2}
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="the carried (bf16) teacher directory")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget-s", type=float, default=300.0, help="distillation seconds for the main run")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--smoke", action="store_true", help="tiny budget, STS-B only, 1 seed, 64 examples (a CPU check)")
    args = p.parse_args()
    if args.smoke:
        args.budget_s, args.batch_size = min(args.budget_s, 20.0), min(args.batch_size, 8)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bertpress-gpu-"))
    teacher = fp32_teacher(args.teacher, work / "teacher")

    calibration = distill(recipe(teacher, work / "calibrate", 10 if args.smoke else 30, args, calibrate=True))
    rate = read_metrics(calibration.output_dir / "metrics.jsonl", "train")[-1]["tokens_per_s"]
    steps = max(20, int(args.budget_s * rate / (args.batch_size * 128)))
    print(f"[gpu] calibration: {rate:,.0f} tokens/s -> {steps} steps in {args.budget_s:.0f}s", flush=True)
    student = distill(recipe(teacher, work / "student", steps, args))

    baseline = work / "copy-1-3-6"
    run = build_run(recipe(teacher, baseline, 1, args))
    initialise("select", InitContext(run.teacher, run.student, 0), {"layers": [1, 3, 6]})
    run.student.save_pretrained(baseline)
    run.teacher.tokenizer.save_pretrained(baseline)
    copy_sentence_stack(teacher, baseline, run.student.config.hidden_size)

    names = TASKS[:2] if args.smoke else TASKS
    overrides = ["seeds=[1]", "max_train_examples=64", "max_eval_examples=64"] if args.smoke else []
    tasks = [load_task(t, default_data_dir(), "tsv") for t in names]
    settings = resolve_settings(list(names), overrides)
    specs = [ModelSpec("tinybert-3l (distilled)", student.student_dir), ModelSpec("copy-1-3-6 (no distillation)",
                                                                                baseline)]
    report = run_compare(specs, tasks, settings, ResultCache(work / "eval-cache"), teacher=ModelSpec("teacher",
                         teacher), latency=False, data_dir=default_data_dir(),
                         command=shlex.join(["python", "benchmarks/quality/gpu_run.py", *sys.argv[1:]]),
                         progress=False)
    s = student.summary
    report["gpu_distillation"] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "machine": conditions(),
        "calibration_tokens_per_s": rate, "steps": s["steps"], "tokens": s["tokens_seen"],
        "batch_size": args.batch_size, "lr": args.lr, "train_time_s": s["train_time_s"], "final": s["final"],
        "recipe": s["recipe"], "wall_s": round(time.perf_counter() - t0, 1)}
    write_report(report, args.out)
    print(f"[gpu] {s['steps']} steps, {s['tokens_seen']:,} tokens in {s['train_time_s']:.0f}s; report in {args.out}",
          flush=True)


if __name__ == "__main__":
    main()
