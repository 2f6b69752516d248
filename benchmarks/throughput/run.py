"""Throughput benchmark of issue 6: bertpress vs TextBrewer vs a plain PyTorch loop on the same distillation work,
then bertpress's optimisations one at a time. One command; writes ``results/throughput.{json,md}``.

    python benchmarks/throughput/run.py [--reps 3 --warmup 3 --steps 8] [--ablation-reps 1] [--no-ablations]

1. Equivalence: each runner trains a few steps with dropout off from the same weights on the same batches; the
   per-step losses must agree to ``--tolerance`` (relative).
2. Comparison: ``--reps`` rounds, each running bertpress, TextBrewer, the plain loop and bertpress with bf16 autocast
   once (one process each, order rotated per round), ``--warmup`` untimed steps then ``--steps`` timed ones, default
   settings (dropout as the checkpoint says).
3. Ablations: bertpress with one optimisation switched off (or an option switched on) at a time, one process per
   variant and round; the reference pools the default's runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SYSTEMS = ("bertpress", "textbrewer", "plain")
#: The comparison's rows: name -> (runner, arguments). ``bertpress`` is pinned to fp32 (the reference loops' numerics);
#: ``bertpress_bf16`` autocasts to bf16, what the default ``mixed_precision: auto`` picks on CPUs with AVX512-BF16/AMX:
#: faster there, but not the same numerics (TextBrewer has no CPU mixed precision).
ENTRIES: dict[str, tuple[str, list[str]]] = {
    "bertpress": ("bertpress", []),
    "textbrewer": ("textbrewer", []),
    "plain": ("plain", []),
    "bertpress_bf16": ("bertpress", ["--set", "train.mixed_precision=bf16"]),
}

#: (name, description, runner arguments); "default" first, the ratio of every other row is to it.
ABLATIONS: list[tuple[str, str, list[str]]] = [
    ("default", "bertpress, fp32 (mixed_precision no), all optimisations on, 1 prefetch worker", []),
    ("recompute_attention", "mapped student layers on SDPA, attention recomputed from Q/K (no kernel hand-over)",
     ["--recompute-attention"]),
    ("eager_attention", "eager attention in every layer (no SDPA; what output_attentions needs)", ["--eager-attention"]),
    ("torch_dropout", "torch's dropout (one Bernoulli draw per element) instead of 16-bit masks", ["--torch-dropout"]),
    ("foreach_adamw", "multi-tensor (foreach) AdamW instead of the fused kernel", ["--foreach-adamw"]),
    ("no_prefetch", "no dataloader worker (num_workers=0)", ["--set", "train.num_workers=0"]),
    ("freeze_embeddings", "freeze_embeddings=true (no optimizer update of the 30522 x 384 matrix)",
     ["--set", "train.freeze_embeddings=true"]),
    ("compile", "compile=true (torch.compile of the hook-free student blocks)", ["--set", "train.compile=true"]),
    ("bf16", "mixed_precision=bf16 (CPU autocast)", ["--set", "train.mixed_precision=bf16"]),
    ("bf16_freeze", "bf16 + freeze_embeddings", ["--set", "train.mixed_precision=bf16", "--set",
                                                 "train.freeze_embeddings=true"]),
    ("bf16_inference_mode", "bf16 + teacher under inference_mode, its features cloned (before; now no_grad)",
     ["--set", "train.mixed_precision=bf16", "--set", "train.teacher_inference_mode=true"]),
    ("bf16_fp32_mse", "bf16 + MSE losses on fp32 copies of 16-bit features (before; now a 16-bit MSE)",
     ["--set", "train.mixed_precision=bf16", "--fp32-mse"]),
    ("bf16_where_dropout", "bf16 + dropout masks applied with a boolean where (before; now a 0/1 multiply)",
     ["--set", "train.mixed_precision=bf16", "--where-dropout"]),
    ("bf16_mt_bits", "bf16 + dropout bits from torch's Mersenne Twister (before; now numpy's SFC64)",
     ["--set", "train.mixed_precision=bf16", "--mt-bits"]),
    ("first_truncated", "mapping 'first' (teacher 1, 2, 3): teacher runs 3 of 6 layers", ["--set", "mapping.strategy=first"]),
    ("first_full", "mapping 'first' with truncation off: teacher runs all 6 layers",
     ["--set", "mapping.strategy=first", "--no-truncate"]),
]


#: ablation rows measured against another row than "default"
REFERENCES = {"first_full": "first_truncated", "bf16_inference_mode": "bf16", "bf16_fp32_mse": "bf16",
              "bf16_where_dropout": "bf16", "bf16_mt_bits": "bf16"}


def machine() -> dict[str, Any]:
    import accelerate
    import textbrewer
    import torch
    import transformers

    from bertpress.evaluate.latency import cpu_name

    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "textbrewer": textbrewer.__version__,
            "python": sys.version.split()[0], "device": "cpu",
            "bf16_cpu": "avx512_bf16" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None}


def run_one(system: str, args: list[str], tmp: Path, tag: str) -> dict[str, Any]:
    out, log = tmp / f"{tag}.json", tmp / f"{tag}.log"
    load = list(os.getloadavg())
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, str(HERE / f"{system}_run.py"), "--out", str(out), *args],
                              cwd=HERE, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"{tag} failed (exit {proc.returncode}):\n" + "".join(log.read_text().splitlines(True)[-30:]))
    result = json.loads(out.read_text())
    result.update(tag=tag, args=args, load_average_start=load, orchestrator_wall_s=time.perf_counter() - t0)
    print(f"  {tag}: {result.get('tokens_per_s', float('nan')):.0f} tok/s, peak RSS {result['peak_rss_mb']:.0f} MB, "
          f"load {load[0]:.1f}, {result['orchestrator_wall_s']:.0f} s", flush=True)
    return result


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def equivalence(tmp: Path, steps: int, tolerance: float) -> dict[str, Any]:
    losses = {s: run_one(s, ["--warmup", "0", "--steps", str(steps), "--no-dropout"], tmp, f"equiv-{s}")["losses"]
              for s in SYSTEMS}
    ref = losses["plain"]
    rel = {s: max(abs(a - b) / abs(b) for a, b in zip(v, ref, strict=True)) for s, v in losses.items()}
    return {"steps": steps, "dropout": False, "losses": losses, "max_relative_difference_to_plain": rel,
            "tolerance": tolerance, "passed": all(r <= tolerance for r in rel.values())}


def comparison(tmp: Path, reps: int, warmup: int, steps: int) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    names = list(ENTRIES)
    for r in range(reps):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotated, so no entry always runs first
            runner, extra = ENTRIES[name]
            runs.append(run_one(runner, ["--warmup", str(warmup), "--steps", str(steps), *extra], tmp,
                                f"rep{r}-{name}"))
            runs[-1]["entry"] = name
    per = {name: [x for x in runs if x["entry"] == name] for name in names}
    summary: dict[str, Any] = {}
    for s, xs in per.items():
        phases = {k: statistics.median(x["phases_ms"][k] for x in xs) for k in xs[0]["phases_ms"]}
        summary[s] = {"tokens_per_s": spread([x["tokens_per_s"] for x in xs]),
                      "tokens_per_cpu_s": spread([x["tokens_per_cpu_s"] for x in xs]),
                      "peak_rss_mb": spread([x["peak_rss_mb"] for x in xs]),
                      "rss_after_warmup_mb": spread([x["memory_after_warmup"]["rss_mb"] for x in xs]),
                      "workers_uss_mb": spread([x["memory_after_warmup"]["workers_uss_mb"] for x in xs]),
                      "phases_ms": phases}
    ratios: dict[str, dict[str, Any]] = {}
    for mine in ("bertpress", "bertpress_bf16"):
        ratios[mine] = {}
        for other in ("textbrewer", "plain"):
            a, b = summary[mine], summary[other]
            ratios[mine][other] = {
                "tokens_per_s_ratio_of_medians": a["tokens_per_s"]["median"] / b["tokens_per_s"]["median"],
                "tokens_per_s_ratio_per_round": [x["tokens_per_s"] / y["tokens_per_s"]
                                                 for x, y in zip(per[mine], per[other], strict=True)],
                "tokens_per_cpu_s_ratio_of_medians": a["tokens_per_cpu_s"]["median"] / b["tokens_per_cpu_s"]["median"],
                "peak_rss_ratio_of_medians": a["peak_rss_mb"]["median"] / b["peak_rss_mb"]["median"],
            }
    return {"reps": reps, "warmup": warmup, "steps": steps, "entries": {k: v[1] for k, v in ENTRIES.items()},
            "summary": summary, "ratios": ratios, "runs": runs}


def ablations(tmp: Path, reps: int, warmup: int, steps: int, names: list[str],
              pooled: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One run per variant and round; the default row pools its own runs with ``default_runs`` (the comparison's
    bertpress runs, the same configuration) so that every ratio has the most stable reference available."""
    chosen = [a for a in ABLATIONS if a[0] in names]
    runs: list[dict[str, Any]] = []
    for r in range(reps):
        for name, _, extra in chosen:
            runs.append(run_one("bertpress", ["--warmup", str(warmup), "--steps", str(steps), *extra], tmp,
                                f"abl{r}-{name}"))
            runs[-1]["variant"] = name
    rows = []
    for name, description, extra in chosen:
        xs = [x for x in runs if x["variant"] == name] + pooled.get(name, [])
        rows.append({"variant": name, "description": description, "args": extra,
                     "tokens_per_s": spread([x["tokens_per_s"] for x in xs]),
                     "tokens_per_cpu_s": spread([x["tokens_per_cpu_s"] for x in xs]),
                     "peak_rss_mb": spread([x["peak_rss_mb"] for x in xs]),
                     "phases_ms": {k: statistics.median(x["phases_ms"][k] for x in xs) for k in xs[0]["phases_ms"]}})
    base = {row["variant"]: row["tokens_per_s"]["median"] for row in rows}
    for row in rows:
        row["reference"] = REFERENCES.get(row["variant"], "default")
        row["ratio_to_reference"] = row["tokens_per_s"]["median"] / base[row["reference"]]
    return {"reps": reps, "warmup": warmup, "steps": steps, "rows": rows, "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--equivalence-steps", type=int, default=4)
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--ablation-reps", type=int, default=1)
    p.add_argument("--ablation-warmup", type=int, default=3)
    p.add_argument("--ablation-steps", type=int, default=6)
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--ablations", default=",".join(a[0] for a in ABLATIONS),
                   help="comma-separated variants (default: all; 'default' and the REFERENCES rows join when needed)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args()
    from report import write_markdown

    t0 = time.perf_counter()
    result: dict[str, Any] = {"command": " ".join(["python benchmarks/throughput/run.py", *sys.argv[1:]]),
                              "machine": machine(), "load_average_start": list(os.getloadavg()),
                              "settings": vars(args) | {"out_dir": str(args.out_dir)}}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp_dir:
        tmp = Path(tmp_dir)
        print("equivalence (dropout off)", flush=True)
        result["equivalence"] = equivalence(tmp, args.equivalence_steps, args.tolerance)
        print("comparison", flush=True)
        result["comparison"] = comparison(tmp, args.reps, args.warmup, args.steps)
        if not args.no_ablations:
            print("ablations", flush=True)
            names = args.ablations.split(",")
            unknown = set(names) - {a[0] for a in ABLATIONS}
            if unknown:
                sys.exit(f"unknown ablation(s) {sorted(unknown)}: choose from {[a[0] for a in ABLATIONS]}")
            names += ["default", *sorted({REFERENCES[n] for n in names if n in REFERENCES} - set(names))]
            # the reference rows pool the comparison's runs of the same settings
            pooled = {variant: [x for x in result["comparison"]["runs"] if x["entry"] == entry]
                      for variant, entry in (("default", "bertpress"), ("bf16", "bertpress_bf16"))}
            result["ablations"] = ablations(tmp, args.ablation_reps, args.ablation_warmup, args.ablation_steps, names,
                                            pooled)
    result["load_average_end"] = list(os.getloadavg())
    result["total_wall_s"] = time.perf_counter() - t0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "throughput.json").write_text(json.dumps(result, indent=1))
    write_markdown(result, args.out_dir / "throughput.md")
    print(f"wrote {args.out_dir / 'throughput.json'} and throughput.md ({result['total_wall_s'] / 60:.1f} min)")
    if not result["equivalence"]["passed"]:
        sys.exit("equivalence check FAILED: the runners do not compute the same losses")


if __name__ == "__main__":
    main()
