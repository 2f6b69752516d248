"""Teacher feature cache (issue 14, item 3b): what reading the teacher's features from disk saves per step.

The throughput benchmark's work (``common.py``: packaged teacher -> 3-layer student, TinyBERT losses along the
uniform mapping, batch 32 x 128) on the first ``--blocks`` Wikipedia blocks (``data.max_blocks``), with the
teacher run live and with ``train.teacher_cache: true``, each under fp32 and under the default precision
(``auto``: bf16 on a CPU with native bf16). The cache is built once, untimed (its size and build time are reported),
then every round runs each variant in its own process (``--warmup`` untimed then ``--steps`` timed steps),
variants rotated per round; medians over ``--reps`` rounds. The cache file was just written, so it sits in the page
cache: this is the warm-cache case (a cache larger than free RAM reads from disk). Writes
``results/teacher_cache.{json,md,png}``; the corpus and teacher caches go to a temporary directory, removed after.

    python benchmarks/throughput/teacher_cache.py [--blocks 2048 --reps 3 --warmup 2 --steps 6]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: variant -> recipe overrides (on top of ``common.recipe``, which pins fp32)
VARIANTS: dict[str, list[str]] = {
    "fp32, live teacher": [],
    "fp32, cached teacher": ["train.teacher_cache=true"],
    "default precision, live teacher": ["train.mixed_precision=auto"],
    "default precision, cached teacher": ["train.mixed_precision=auto", "train.teacher_cache=true"],
}


def run(args: list[str], out: Path) -> dict[str, Any]:
    import subprocess

    t0, load = time.perf_counter(), os.getloadavg()[0]
    proc = subprocess.run([sys.executable, str(HERE / "bertpress_run.py"), "--out", str(out), *args], cwd=HERE,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"run failed ({shlex.join(args)}):\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result.update(wall_s=round(time.perf_counter() - t0, 1), load_start=load)
    return result


def write_report(report: dict[str, Any], results: Path) -> None:
    """``teacher_cache.{json,md,png}`` in ``results``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bertpress.atomic import atomic_write_json, atomic_write_text

    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "teacher_cache.json", report)
    c, rows = report["cache"], report["summary"]
    lines = ["# Teacher feature cache: live teacher vs features read from disk", "",
             f"The throughput benchmark's work (batch 32 x 128, dropout on) on the first {report['blocks']:,} "
             f"Wikipedia blocks; {report['reps']} rounds x {report['warmup']} warm-up + {report['steps']} timed "
             f"steps per variant, one process each, rotated; medians (min-max). Machine: {report['machine']['cpu']}, "
             f"{report['machine']['cpu_count']} cores, 1-minute load {report['load'][0]:.1f}-{report['load'][1]:.1f} "
             f"at the runs' starts. Command: `{report['command']}`.", "",
             f"Cache: {c['blocks']:,} training blocks, {c['bytes'] / 1e9:.2f} GB in bf16 ({c['bytes'] / c['blocks'] / 1e6:.2f} "
             f"MB per block: {', '.join(f'{k} {v}' for k, v in c['shapes'].items())}), built in "
             f"{c['build_seconds']:.0f} s (one teacher pass over the blocks). Warm page cache.", "",
             "| variant | tokens/s | vs live, same precision | teacher forward ms | peak RSS MB |",
             "|:--|--:|--:|--:|--:|"]
    for name, r in rows.items():
        live = rows[name.replace("cached", "live")]["tokens_per_s"]["median"]
        t = r["tokens_per_s"]
        lines.append(f"| {name} | {t['median']:,.0f} ({t['min']:,.0f}-{t['max']:,.0f}) | "
                     f"{t['median'] / live:.2f}x | {r['teacher_ms']:,.0f} | {r['peak_rss_mb']:,.0f} |")
    b = report["break_even_reads"]
    lines += ["", "Building costs one teacher pass; each later read of a block saves one. With the fp32 saving "
              f"measured here the cache pays for itself after about {b:.1f} reads of each block (epochs, or runs on "
              "the same corpus, teacher and mapping)." if b else "", ""]
    atomic_write_text(results / "teacher_cache.md", "\n".join(lines))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    names = list(rows)
    ax.barh(names, [rows[n]["tokens_per_s"]["median"] for n in names], color=["C0", "C1", "C0", "C1"])
    ax.set(xlabel="tokens/s (median)", title="teacher run live vs read from the cache")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(results / "teacher_cache.png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, default=2048)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = p.parse_args()
    from bertpress.evaluate.latency import conditions

    report: dict[str, Any] = {"command": shlex.join(["python", "benchmarks/throughput/teacher_cache.py",
                                                     *sys.argv[1:]]), "machine": conditions(),
                              "blocks": args.blocks, "reps": args.reps, "warmup": args.warmup, "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="bench-teacher-cache-") as tmp_dir:
        tmp = Path(tmp_dir)
        common = [f"data.max_blocks={args.blocks}", f"data.cache_dir={tmp / 'cache'}"]
        sets = {n: [x for o in common + v for x in ("--set", o)] for n, v in VARIANTS.items()}
        print("building the cache (untimed)", flush=True)
        run(["--warmup", "0", "--steps", "1", *sets["fp32, cached teacher"]], tmp / "build.json")
        (meta_path,) = (tmp / "cache" / "teacher").glob("*/meta.json")
        report["cache"] = json.loads(meta_path.read_text())
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in VARIANTS}
        names = list(VARIANTS)
        for r in range(args.reps):
            for name in names[r % len(names):] + names[:r % len(names)]:
                res = run(["--warmup", str(args.warmup), "--steps", str(args.steps), *sets[name]],
                          tmp / f"{r}-{len(runs[name])}.json")
                runs[name].append(res)
                print(f"  round {r}: {name}: {res['tokens_per_s']:,.0f} tok/s, load {res['load_start']:.1f}",
                      flush=True)
    report["summary"] = {n: {"tokens_per_s": {"median": statistics.median(x["tokens_per_s"] for x in xs),
                                              "min": min(x["tokens_per_s"] for x in xs),
                                              "max": max(x["tokens_per_s"] for x in xs)},
                             "teacher_ms": statistics.median(x["phases_ms"]["teacher_forward"] for x in xs),
                             "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in xs)}
                         for n, xs in runs.items()}
    report["load"] = [min(x["load_start"] for xs in runs.values() for x in xs),
                      max(x["load_start"] for xs in runs.values() for x in xs)]
    s = report["summary"]
    step = {k: 32 * 128 / s[k]["tokens_per_s"]["median"] for k in ("fp32, live teacher", "fp32, cached teacher")}
    saved = step["fp32, live teacher"] - step["fp32, cached teacher"]
    per_block_build = report["cache"]["build_seconds"] / report["cache"]["blocks"]
    report["break_even_reads"] = per_block_build / (saved / 32) if saved > 0 else None
    report["runs"] = runs
    write_report(report, args.out_dir)
    print((args.out_dir / "teacher_cache.md").read_text())


if __name__ == "__main__":
    main()
