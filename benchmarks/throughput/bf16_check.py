"""bf16 quality check (issue 14, item 1): does CPU bf16 autocast distil as well as fp32, and how much faster is it?

The shipped ``recipes/tinybert-3l.yaml`` (packaged teacher, Wikipedia shards) runs from each of ``--seeds`` twice,
once with ``train.mixed_precision: no`` and once with ``bf16``, for ``--steps`` steps (held-out loss every
``--eval-every``), one run at a time on an otherwise idle machine. Each student is also scored zero-shot on STS-B
(Spearman of mean-pooled cosines, the 1,500 dev pairs, no training): the cheapest downstream signal. The verdict:
for every seed, bf16's final held-out loss is within ``--tolerance`` (relative) of fp32's. A CPU without native bf16
(AVX512-BF16 / AMX) is reported as such: there autocast emulates bf16 and is slower, so the question does not arise.
Finished runs (``OUT/SEED/PRECISION/result.json``) are reused, so an interrupted check continues.

    python benchmarks/throughput/bf16_check.py [--seeds 1 2 3 --steps 300 --batch-size 16 --eval-every 100]

Writes ``results/bf16_check.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
SHARDS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"
PRECISIONS = {"no": "fp32", "bf16": "bf16"}


def one_run(precision: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Distil once (or read the finished result) and score the student zero-shot."""
    from bertpress.atomic import atomic_write_json
    from bertpress.data.tasks.files import default_data_dir
    from bertpress.evaluate.cache import ResultCache
    from bertpress.evaluate.settings import resolve_settings
    from bertpress.evaluate.suite import ModelSpec, evaluate_model
    from bertpress.evaluate.tasks import load_task
    from bertpress.train.metrics import read_metrics
    from bertpress.train.run import distill

    out = args.out_dir / str(seed) / precision
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides = [f"output_dir={out / 'run'}", f"seed={seed}", f"train.max_steps={args.steps}",
                 f"train.batch_size={args.batch_size}", f"train.eval_every={args.eval_every}", "train.save_every=0",
                 f"train.mixed_precision={precision}", f"data.sources=[{json.dumps(str(default_data_dir() / SHARDS))}]"]
    start = time.perf_counter()
    result = distill(ROOT / "recipes" / "tinybert-3l.yaml", overrides=overrides, overwrite=True)
    metrics = out / "run" / "metrics.jsonl"
    train = read_metrics(metrics, "train")
    zeroshot = evaluate_model(ModelSpec(f"{precision}-{seed}", result.student_dir),
                              [load_task("stsb-zeroshot", default_data_dir(), "tsv")], resolve_settings(["stsb-zeroshot"]),
                              ResultCache(out / "eval-cache"), progress=False)["stsb-zeroshot"]["mean"]["score"]
    record = {"final_heldout": result.summary["final"],
              "heldout_curve": [(r["step"], r["loss"]) for r in read_metrics(metrics, "valid")],
              "train_time_s": result.summary["train_time_s"],
              "tokens_per_s": result.summary["tokens_seen"] / result.summary["train_time_s"],
              "peak_tokens_per_s": max(r["tokens_per_s"] for r in train), "zeroshot_stsb": zeroshot,
              "load_average_after": list(os.getloadavg()), "wall_s": round(time.perf_counter() - start, 1)}
    atomic_write_json(done, record)
    return record


def summarise(runs: dict[int, dict[str, dict[str, Any]]], tolerance: float) -> dict[str, Any]:
    """Per seed: bf16's relative held-out loss difference, speed-up and zero-shot difference; the verdict."""
    per_seed = {}
    for seed, r in runs.items():
        fp32, bf16 = r["no"], r["bf16"]
        relative = (bf16["final_heldout"]["loss"] - fp32["final_heldout"]["loss"]) / fp32["final_heldout"]["loss"]
        per_seed[seed] = {"relative_heldout_difference": relative,
                          "speedup": bf16["tokens_per_s"] / fp32["tokens_per_s"],
                          "zeroshot_difference": bf16["zeroshot_stsb"] - fp32["zeroshot_stsb"]}
    rel = [v["relative_heldout_difference"] for v in per_seed.values()]
    return {"per_seed": per_seed, "mean_relative_heldout_difference": statistics.fmean(rel),
            "max_abs_relative_heldout_difference": max(abs(x) for x in rel),
            "within_tolerance": all(abs(x) <= tolerance for x in rel),
            "median_speedup": statistics.median(v["speedup"] for v in per_seed.values()),
            "mean_zeroshot_difference": statistics.fmean(v["zeroshot_difference"] for v in per_seed.values())}


def write(report: dict[str, Any], results: Path = RESULTS) -> str:
    """``bf16_check.{json,md}`` in ``results``; returns the Markdown."""
    from bertpress.atomic import atomic_write_json, atomic_write_text

    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "bf16_check.json", report)
    m, s = report["machine"], report["summary"]
    md = ["# bf16 autocast vs fp32 on this CPU", "",
          f"`recipes/tinybert-3l.yaml`, {report['steps']} steps x {report['batch_size']} blocks x 128 tokens per run, "
          f"seeds {', '.join(str(x) for x in report['runs'])} (fp32 and bf16 from the same seed); {m['cpu']}, "
          f"{m['cpu_count']} cores, native bf16 flags: {', '.join(m['native_bf16_flags']) or 'none'}; load average "
          f"at the start {m['load_average']}. Zero-shot STS-B: Spearman x100 of mean-pooled cosines on the 1,500 dev "
          f"pairs. Command: `{report['command']}`.", "",
          "| seed | precision | final held-out loss | zero-shot STS-B | tokens/s | train time s |",
          "|--:|:--|--:|--:|--:|--:|"]
    for seed, r in report["runs"].items():
        for name, label in PRECISIONS.items():
            x = r[name]
            md.append(f"| {seed} | {label} | {x['final_heldout']['loss']:.5f} | {x['zeroshot_stsb']:.2f} | "
                      f"{x['tokens_per_s']:,.0f} | {x['train_time_s']:.0f} |")
    md += ["", "| seed | held-out loss, bf16 vs fp32 | zero-shot, bf16 - fp32 | speed-up |", "|--:|--:|--:|--:|"]
    for seed, v in s["per_seed"].items():
        md.append(f"| {seed} | {100 * v['relative_heldout_difference']:+.2f}% | {v['zeroshot_difference']:+.2f} | "
                  f"{v['speedup']:.2f}x |")
    md += ["", f"bf16 vs fp32: held-out loss {100 * s['mean_relative_heldout_difference']:+.2f}% on average, at most "
           f"{100 * s['max_abs_relative_heldout_difference']:.2f}% apart (tolerance ±{100 * report['tolerance']:.1f}% "
           f"per seed: {'within' if s['within_tolerance'] else 'OUTSIDE'}); zero-shot STS-B "
           f"{s['mean_zeroshot_difference']:+.2f} on average; {s['median_speedup']:.2f}x the tokens/s (median).", ""]
    text = "\n".join(md)
    atomic_write_text(results / "bf16_check.md", text)
    return text


def main() -> None:
    from bertpress.evaluate.latency import conditions
    from bertpress.train.precision import native_bf16_cpu

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--tolerance", type=float, default=0.01, help="relative held-out loss difference allowed per seed")
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "bf16-check")
    args = p.parse_args()
    machine = {**conditions(), "native_bf16_flags": native_bf16_cpu(), "cpu_count": os.cpu_count()}
    args.out_dir = args.out_dir / f"{args.steps}x{args.batch_size}"
    runs = {seed: {precision: one_run(precision, seed, args) for precision in PRECISIONS} for seed in args.seeds}
    report = {"command": shlex.join(["python", "benchmarks/throughput/bf16_check.py", *sys.argv[1:]]),
              "machine": machine, "steps": args.steps, "batch_size": args.batch_size, "tolerance": args.tolerance,
              "runs": runs, "summary": summarise(runs, args.tolerance)}
    print(write(report))


if __name__ == "__main__":
    main()
