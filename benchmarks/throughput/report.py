"""Markdown for ``results/throughput.json`` (see run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Issue 14's speed goals with the default settings (the same work: dropout on).
TARGETS = {"textbrewer": 2.0, "plain": 1.5}
PHASES = ("teacher_forward", "student_forward", "loss", "backward", "optimizer", "data_and_other")
PHASE_LABELS = {"teacher_forward": "teacher forward", "student_forward": "student forward",
                "loss": "loss (after the student forward)", "backward": "backward",
                "optimizer": "optimizer (clip + AdamW)", "data_and_other": "data & other"}
NAMES = {"bertpress": "bertpress (fp32)", "bertpress_bf16": "bertpress, bf16 autocast (the default `auto` on a CPU with native bf16)", "textbrewer": "TextBrewer `GeneralDistiller`", "plain": "plain PyTorch loop"}


def _range(s: dict[str, float], fmt: str = ",.0f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def _load(runs: list[dict[str, Any]]) -> str:
    loads = [r["load_average_start"][0] for r in runs] + [r["load_average_end"][0] for r in runs]
    return f"{min(loads):.1f}–{max(loads):.1f}"


def _machine(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    runs = result["comparison"]["runs"] + result.get("ablations", {}).get("runs", [])
    return [
        f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, accelerate {m['accelerate']}, TextBrewer {m['textbrewer']}, "
        f"Python {m['python']}; CPU only (AVX512-BF16: {'yes' if m['bf16_cpu'] else 'no'}).",
        f"- Load: 1-minute load average {_load(runs)} at the start and end of the runs (the benchmark's own "
        "processes count in it; a value well above the core count means other jobs shared the machine). The three "
        "systems ran alternately, one process per run, so the ratios compare like with like. Tokens per CPU-second "
        "(process CPU time, all threads) is less sensitive to load than wall time and is given as a cross-check.",
        f"- Command: `{result['command']}`; total time {result['total_wall_s'] / 60:.1f} min.",
    ]


def _equivalence(eq: dict[str, Any]) -> list[str]:
    lines = ["## Same work: per-step losses with dropout off", "",
             "| step | plain loop | TextBrewer | bertpress |", "|---:|---:|---:|---:|"]
    for i, row in enumerate(zip(eq["losses"]["plain"], eq["losses"]["textbrewer"], eq["losses"]["bertpress"],
                                strict=True), start=1):
        lines.append(f"| {i} | " + " | ".join(f"{v:.7f}" for v in row) + " |")
    rel = eq["max_relative_difference_to_plain"]
    lines += ["", f"Largest relative difference to the plain loop: TextBrewer {rel['textbrewer']:.1e}, bertpress "
              f"{rel['bertpress']:.1e} (tolerance {eq['tolerance']:.0e}): "
              f"**{'passed' if eq['passed'] else 'FAILED'}**. Same initial weights (select: teacher layers 1, 3, 5), "
              "same batches, same optimizer and schedule.", ""]
    return lines


def _comparison(cmp: dict[str, Any]) -> list[str]:
    s, ratios = cmp["summary"], cmp["ratios"]
    lines = [f"## Throughput ({cmp['reps']} rounds x {cmp['warmup']} warm-up + {cmp['steps']} timed steps, "
             "batch 32 x 128, dropout on)", "",
             "| system | tokens/s, median (min–max) | tokens per CPU-second | peak RSS MB | RSS after warm-up MB |",
             "|---|---:|---:|---:|---:|"]
    for name, x in s.items():
        lines.append(f"| {NAMES.get(name, name)} | {_range(x['tokens_per_s'])} | {x['tokens_per_cpu_s']['median']:,.0f} "
                     f"| {_range(x['peak_rss_mb'])} | {x['rss_after_warmup_mb']['median']:,.0f} |")
    workers = s["bertpress"]["workers_uss_mb"]["median"]
    lines += ["", f"Peak RSS is the main process's `ru_maxrss`; bertpress's prefetching worker process adds "
              f"{workers:.0f} MB of its own (USS).", "",
              "| ratio | vs | tokens/s (ratio of medians; per round) | tokens per CPU-s | peak RSS | targets |",
              "|---|---|---:|---:|---:|---|"]
    for name, by_other in ratios.items():
        for other, r in by_other.items():
            t, mem = r["tokens_per_s_ratio_of_medians"], r["peak_rss_ratio_of_medians"]
            rounds = ", ".join(f"{v:.2f}" for v in r["tokens_per_s_ratio_per_round"])
            verdict = (f"speed ≥ {TARGETS[other]}x: **{'met' if t >= TARGETS[other] else 'missed'}**; "
                       f"memory ≤ 1: **{'met' if mem <= 1 else 'missed'}**")
            lines.append(f"| {NAMES.get(name, name)} | {NAMES[other]} | {t:.2f}x ({rounds}) | "
                         f"{r['tokens_per_cpu_s_ratio_of_medians']:.2f}x | {mem:.3f}x | {verdict} |")
    return [*lines, ""]


def _profile(cmp: dict[str, Any]) -> list[str]:
    s = cmp["summary"]
    lines = ["## Where the time goes (ms per step, median over rounds; share of the step)", "",
             "| phase | bertpress | TextBrewer | plain loop |", "|---|---:|---:|---:|"]
    totals = {n: sum(s[n]["phases_ms"].values()) for n in ("bertpress", "textbrewer", "plain")}
    for ph in PHASES:
        cells = [f"{s[n]['phases_ms'][ph]:,.0f} ({100 * s[n]['phases_ms'][ph] / totals[n]:.0f}%)"
                 for n in ("bertpress", "textbrewer", "plain")]
        lines.append(f"| {PHASE_LABELS[ph]} | " + " | ".join(cells) + " |")
    lines.append("| **step** | " + " | ".join(f"**{totals[n]:,.0f}**" for n in ("bertpress", "textbrewer", "plain"))
                 + " |")
    lines += ["", "Phases come from hooks (forward pre/post hooks on both models, a wrapped `Tensor.backward`, an "
              "optimizer step post-hook), so the loops run unmodified. *Loss* is everything between the end of the "
              "student forward and the start of backward. bertpress's student hands the attention probabilities of its "
              "mapped layers over from its forward (one eager attention in those layers, SDPA elsewhere); the "
              "teacher's are recomputed from its captured Q/K right after its forward, which counts in *data & "
              "other* (results recorded before the hand-over counted the student's recompute in *loss*). The other "
              "two get both from the forward pass (`output_attentions`).", ""]
    return lines


def _ablations(abl: dict[str, Any]) -> list[str]:
    lines = [f"## bertpress optimisations, one at a time ({abl['reps']} round(s) x {abl['warmup']} warm-up + "
             f"{abl['steps']} timed steps)", "",
             "| variant | what changes | tokens/s | vs reference | tokens per CPU-s | peak RSS MB | loss ms | teacher ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in abl["rows"]:
        ref = "" if row["variant"] == "default" else f" ({row['reference']})"
        lines.append(f"| {row['variant']} | {row['description']} | {_range(row['tokens_per_s'])} | "
                     f"{row['ratio_to_reference']:.2f}x{ref} | {row['tokens_per_cpu_s']['median']:,.0f} | "
                     f"{row['peak_rss_mb']['median']:,.0f} | {row['phases_ms']['loss']:,.0f} | "
                     f"{row['phases_ms']['teacher_forward']:,.0f} |")
    default = next(r for r in abl["rows"] if r["variant"] == "default")["tokens_per_s"]
    lines += ["", f"The default row pools its ablation run(s) with the comparison's bertpress runs ({default['n']} "
              f"runs, {default['min']:,.0f}–{default['max']:,.0f} tokens/s), and the bf16 row with the comparison's "
              "bf16 runs: that spread is the noise level a ratio must clear to mean anything on this machine. Each "
              "`bf16_*` row puts back one thing the bf16 path did before and is measured against the `bf16` row.",
              "", "Ratios below 1 mean switching the optimisation off (or the option on) is slower. The truncation "
              "pair uses mapping `first` (student 1, 2, 3 <- teacher 1, 2, 3), where the deepest mapped teacher layer "
              "is 3: truncation on runs 3 teacher layers, off runs all 6 (with the uniform mapping the deepest layer "
              "is 6 and truncation has nothing to cut). `freeze_embeddings` and bf16 change the training itself (not "
              "the same work as the comparison).", ""]
    return lines


def write_markdown(result: dict[str, Any], path: Path) -> None:
    lines = ["# Distillation throughput: bertpress vs TextBrewer vs a plain PyTorch loop", "",
             "Generated by `python benchmarks/throughput/run.py` (see `benchmarks/README.md`). Work: packaged teacher "
             "all-MiniLM-L6-v2 (6 layers, hidden 384) -> 3-layer student initialised by `select`; TinyBERT "
             "embedding + hidden-state + attention-probability MSE along the uniform mapping (1, 2, 3 <- 2, 4, 6); "
             "batch 32 x 128 tokens of packed Wikipedia; AdamW lr 5e-4, eps 1e-6, weight decay 0.01, linear warm-up "
             "and decay, clipping 1.0.", "", *_machine(result), "",
             *_equivalence(result["equivalence"]), *_comparison(result["comparison"]),
             *_profile(result["comparison"])]
    if "ablations" in result:
        lines += _ablations(result["ablations"])
    path.write_text("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":  # re-render the Markdown from a results JSON: report.py results/throughput.json
    import json
    import sys

    source = Path(sys.argv[1])
    write_markdown(json.loads(source.read_text()), source.with_suffix(".md"))
