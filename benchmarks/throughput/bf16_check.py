"""bf16 quality check (issue 14, item 1): does CPU bf16 autocast distil as well as fp32, and how much faster is it?

The shipped ``recipes/tinybert-3l.yaml`` (packaged teacher, Wikipedia shards) runs twice from the same seed, once
with ``train.mixed_precision: no`` and once with ``bf16``, for ``--steps`` steps (held-out loss every
``--eval-every``), one after the other on an otherwise idle machine. The verdict: the final held-out loss of bf16 is
within ``--tolerance`` (relative) of fp32's. A CPU without native bf16 (AVX512-BF16 / AMX) is reported as such: there
autocast emulates bf16 and is slower, so the question does not arise.

    python benchmarks/throughput/bf16_check.py [--steps 200 --batch-size 16 --eval-every 50 --tolerance 0.01]

Writes ``results/bf16_check.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
SHARDS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"


def main() -> None:
    from bertpress.atomic import atomic_write_json, atomic_write_text
    from bertpress.data.tasks.files import default_data_dir
    from bertpress.evaluate.latency import conditions
    from bertpress.train.metrics import read_metrics
    from bertpress.train.precision import native_bf16_cpu
    from bertpress.train.run import distill

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--tolerance", type=float, default=0.01, help="relative held-out loss difference allowed")
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "bf16-check")
    args = p.parse_args()
    runs = {}
    for precision in ("no", "bf16"):
        out = args.out_dir / precision
        overrides = [f"output_dir={out}", f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
                     f"train.eval_every={args.eval_every}", "train.save_every=0", f"train.mixed_precision={precision}",
                     f"data.sources=[{json.dumps(str(default_data_dir() / SHARDS))}]"]
        start = time.perf_counter()
        result = distill(ROOT / "recipes" / "tinybert-3l.yaml", overrides=overrides, overwrite=True)
        train = read_metrics(out / "metrics.jsonl", "train")
        runs[precision] = {"final_heldout": result.summary["final"],
                           "heldout_curve": [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl",
                                                                                           "valid")],
                           "train_time_s": result.summary["train_time_s"],
                           "tokens_per_s": result.summary["tokens_seen"] / result.summary["train_time_s"],
                           "peak_tokens_per_s": max(r["tokens_per_s"] for r in train),
                           "wall_s": round(time.perf_counter() - start, 1)}
    fp32, bf16 = runs["no"]["final_heldout"]["loss"], runs["bf16"]["final_heldout"]["loss"]
    relative = (bf16 - fp32) / fp32
    report = {"command": shlex.join(["python", "benchmarks/throughput/bf16_check.py", *sys.argv[1:]]),
              "machine": {**conditions(), "native_bf16_flags": native_bf16_cpu(), "cpu_count": os.cpu_count()},
              "steps": args.steps, "batch_size": args.batch_size, "tolerance": args.tolerance, "runs": runs,
              "relative_heldout_difference": relative, "within_tolerance": abs(relative) <= args.tolerance,
              "speedup": runs["bf16"]["tokens_per_s"] / runs["no"]["tokens_per_s"]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "bf16_check.json", report)
    m = report["machine"]
    md = ["# bf16 autocast vs fp32 on this CPU", "",
          f"`recipes/tinybert-3l.yaml`, {args.steps} steps x {args.batch_size} blocks, same seed; {m['cpu']}, "
          f"{m['cpu_count']} cores, native bf16 flags: {', '.join(m['native_bf16_flags']) or 'none'}; load average "
          f"after {m['load_average']}. Command: `{report['command']}`.", "",
          "| precision | final held-out loss | tokens/s | train time s |", "|:--|--:|--:|--:|"]
    for name, r in runs.items():
        md.append(f"| {'fp32' if name == 'no' else name} | {r['final_heldout']['loss']:.5f} | {r['tokens_per_s']:,.0f} | "
                  f"{r['train_time_s']:.0f} |")
    md += ["", f"bf16 vs fp32: held-out loss {100 * relative:+.2f}% (tolerance ±{100 * args.tolerance:.1f}%: "
           f"{'within' if report['within_tolerance'] else 'OUTSIDE'}), {report['speedup']:.2f}x the tokens/s.", ""]
    atomic_write_text(RESULTS / "bf16_check.md", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
