"""Shared teacher forward (issue 14, item 3a): N students distilled as one cohort vs N solo runs.

The layer-mapping search's proxy distillation (``recipes/search-3l.yaml``: packaged all-MiniLM-L6-v2 teacher, 3-layer
students copied from teacher layers 1, 3, 5, TinyBERT objective on the Wikipedia shards, ``--steps`` steps x
``--batch-size`` blocks of 128 tokens on a ``--max-blocks`` sample), for ``--mappings`` (one student each): first
every mapping alone, one after the other, then all of them as one cohort (:func:`bertpress.train.cohort.
distill_cohort`). Reports wall and train time of both, the speed-up, the teacher forwards each needed, and checks
that every cohort student is bit for bit its solo run (the real model, dropout 0.1).

    python benchmarks/throughput/cohort.py [--steps 60 --batch-size 16 --mappings 2,4,6 4,5,6 1,3,5 1,2,3]

Run it alone on the machine (timings); writes ``results/cohort.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
SHARDS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"


def main() -> None:
    import torch
    from safetensors.torch import load_file

    from bertpress.atomic import atomic_write_json, atomic_write_text
    from bertpress.data.tasks.files import default_data_dir
    from bertpress.evaluate.latency import conditions
    from bertpress.train.build import resolve_recipe
    from bertpress.train.cohort import distill_cohort
    from bertpress.train.run import distill

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-blocks", type=int, default=2000)
    p.add_argument("--mappings", nargs="+", default=["2,4,6", "4,5,6", "1,3,5", "1,2,3"])
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "cohort-bench")
    args = p.parse_args()
    mappings = [[int(x) for x in m.split(",")] for m in args.mappings]

    def recipe(kind: str, layers: list[int], steps: int = args.steps):
        out = args.out_dir / kind / "-".join(map(str, layers))
        return resolve_recipe(ROOT / "recipes" / "search-3l.yaml", [
            f"output_dir={out}", f"train.max_steps={steps}", f"train.batch_size={args.batch_size}",
            "train.eval_every=0", "train.save_every=0", "train.eval_batches=4", "train.num_workers=0",
            f"data.max_blocks={args.max_blocks}", f"mapping={json.dumps({'strategy': 'explicit', 'layers': layers})}",
            f"data.sources=[{json.dumps(str(default_data_dir() / SHARDS))}]"])

    distill(recipe("warmup", mappings[0], 2), overwrite=True)  # corpus cache and first-call costs, not timed
    load = {"before": conditions()["load_average"]}
    start = time.perf_counter()
    solo = [distill(recipe("solo", m), overwrite=True) for m in mappings]
    solo_wall = time.perf_counter() - start
    load["after_solo"] = conditions()["load_average"]
    start = time.perf_counter()
    cohort = distill_cohort([recipe("cohort", m) for m in mappings], overwrite=True)
    cohort_wall = time.perf_counter() - start
    load["after_cohort"] = conditions()["load_average"]

    def weights(result):
        return load_file(str(result.student_dir / "model.safetensors"))

    identical = []
    for a, b in zip(solo, cohort, strict=True):
        wa, wb = weights(a), weights(b)
        identical.append(wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa))
    c = cohort[0].summary["cohort"]
    report = {
        "command": shlex.join(["python", "benchmarks/throughput/cohort.py", *sys.argv[1:]]),
        "machine": {**conditions(), "load_average": load},
        "setting": {"recipe": "recipes/search-3l.yaml", "steps": args.steps, "batch_size": args.batch_size,
                    "block_size": 128, "max_blocks": args.max_blocks, "mappings": mappings},
        "solo": {"wall_s": round(solo_wall, 1), "train_s": round(sum(r.summary["train_time_s"] for r in solo), 1),
                 "teacher_forwards": args.steps * len(mappings),
                 "per_member_train_s": [r.summary["train_time_s"] for r in solo]},
        "cohort": {"wall_s": round(cohort_wall, 1), "train_s": max(r.summary["train_time_s"] for r in cohort),
                   "teacher_forwards": c["teacher_forwards"], "member_batches": c["member_batches"]},
        "speedup_wall": round(solo_wall / cohort_wall, 3),
        "bit_identical": identical,
        "final_loss": {"solo": [r.summary["final"]["loss"] for r in solo],
                       "cohort": [r.summary["final"]["loss"] for r in cohort]},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "cohort.json", report)
    m = report["machine"]
    md = ["# Shared teacher forward: a cohort of students vs solo runs", "",
          f"`recipes/search-3l.yaml` (packaged all-MiniLM-L6-v2 teacher, 3-layer students from teacher layers 1, 3, 5, "
          f"TinyBERT objective), {args.steps} steps x {args.batch_size} x 128 tokens on {args.max_blocks} Wikipedia "
          f"blocks, one student per mapping {', '.join(map(str, mappings))}. {m['cpu']}, {m['cpu_count']} cores, "
          f"{m['torch_threads']} torch threads; load average (1/5/15 min) before {load['before']}, after the solo runs "
          f"{load['after_solo']}, after the cohort {load['after_cohort']}. Command: `{report['command']}`.", "",
          "| | wall s | teacher forwards |", "|:--|--:|--:|",
          f"| {len(mappings)} solo runs, one after the other | {solo_wall:.1f} | {args.steps * len(mappings)} |",
          f"| one cohort | {cohort_wall:.1f} | {c['teacher_forwards']} |", "",
          f"Speed-up {report['speedup_wall']:.2f}x; every cohort student bit for bit its solo run: "
          f"{'yes' if all(identical) else 'NO ' + str(identical)}.", ""]
    atomic_write_text(RESULTS / "cohort.md", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
