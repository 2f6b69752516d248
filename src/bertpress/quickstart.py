"""The quickstart: packaged teacher → 3-layer student in a few minutes on a CPU, then a summary table.

Works offline with nothing but the package installed: the corpus is built from the docstrings of Python's standard
library unless ``corpus`` names real text.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModel

from bertpress.atomic import atomic_write_json, atomic_write_text
from bertpress.data.builtin_text import write_builtin_corpus
from bertpress.data.corpus import load_corpus
from bertpress.errors import BertpressError
from bertpress.evaluate.agreement import representation_agreement
from bertpress.evaluate.latency import footprint, measure_latency
from bertpress.evaluate.zeroshot import sts_zeroshot
from bertpress.init import InitContext, initialise
from bertpress.models.pooling import model_pooling
from bertpress.models.teacher import PACKAGED_TEACHER
from bertpress.recipe import recipe_from_dict
from bertpress.train.build import build_run
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill

#: Teacher layers copied into the student and distilled along, the top one included (benchmarks/quality).
QUICKSTART_LAYERS = (1, 3, 6)


def quickstart_recipe(out_dir: Path, corpus: list[str], steps: int, batch_size: int, lr: float = 1e-4
                      ) -> dict[str, Any]:
    """The recipe the quickstart runs (also written to the run directory as ``recipe.yaml``)."""
    return {
        "name": "quickstart",
        "seed": 42,
        "output_dir": str(out_dir / "run"),
        "teacher": {"name_or_path": PACKAGED_TEACHER},
        "student": {"num_layers": 3, "init": "select", "init_args": {"layers": list(QUICKSTART_LAYERS)}},
        "data": {"sources": corpus, "block_size": 128, "max_validation_blocks": 64},
        # the packaged teacher is a sentence-embedding model without an MLM head: DistilBERT's cosine term along
        # the mapping aligns representation directions, which is what embedding similarity uses (MSE objectives
        # first shrink norms, so agreement rises only after long training); each student layer learns the teacher
        # layer it was copied from (benchmarks/quality: mapping other layers lowered zero-shot STS-B)
        "objective": {"name": "distilbert", "alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 1.0,
                      "cosine_layers": "mapping"},
        "mapping": {"layers": list(QUICKSTART_LAYERS)},
        "train": {"max_steps": steps, "batch_size": batch_size, "lr": lr, "warmup_ratio": 0.1,
                  "eval_every": max(1, steps // 4), "save_every": max(1, steps // 2), "log_every": 5},
    }


def _footprint(model_dir: Path) -> dict[str, float]:
    f = footprint(model_dir)
    return {"parameters": f["parameters"], "disk_mb": f["size_mb"]}


def _sts_pairs(limit: int):
    """Up to ``limit`` STS-B dev pairs and gold scores from the data directory, ``None`` when it has none."""
    if limit <= 0:
        return None
    try:
        from bertpress.data.tasks.files import resolve_data_dir
        from bertpress.evaluate.tasks import load_task

        dev = load_task("stsb-zeroshot", resolve_data_dir(None), "tsv").dev["dev"][:limit]
    except BertpressError:
        return None
    return [(e.text_a, e.text_b or "") for e in dev], [float(e.label) for e in dev]


def run_quickstart(out_dir: Path, *, corpus: list[str] | None = None, steps: int = 120,
                   batch_size: int = 16, lr: float = 1e-4, sts_pairs: int = 1500) -> dict[str, Any]:
    """Distil, measure and summarise; returns the summary (also written as ``summary.json``/``summary.md``).

    With STS-B in the data directory (``$BERTPRESS_DATA``), the summary adds zero-shot STS-B (Spearman of pooled
    embedding cosines on ``sts_pairs`` dev pairs, the teacher's pooling) for teacher and student, before and after."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = corpus or [str(write_builtin_corpus(out_dir / "corpus" / "stdlib-docstrings.txt"))]
    recipe = recipe_from_dict(quickstart_recipe(out_dir, sources, steps, batch_size, lr))

    run = build_run(recipe)  # the student before distillation: the copied teacher layers
    teacher, initial = run.teacher, run.student
    held_out = torch.as_tensor(load_corpus(recipe.data, teacher.tokenizer, seed=recipe.seed).valid, dtype=torch.long)
    initialise(recipe.student.init, InitContext(teacher, initial, recipe.seed), recipe.student.init_args)
    before = representation_agreement(teacher.model, initial, held_out)
    sts, pooling = _sts_pairs(sts_pairs), model_pooling(Path(teacher.model.name_or_path))[0]

    def zero_shot(model) -> float | None:
        return None if sts is None else sts_zeroshot(model, teacher.tokenizer, *sts, pooling=pooling)["score"]

    zs_teacher, zs_before = zero_shot(teacher.model), zero_shot(initial)

    result = distill(recipe)
    student = AutoModel.from_pretrained(result.student_dir)
    after = representation_agreement(teacher.model, student, held_out)
    zs_after = zero_shot(student)

    teacher_dir = Path(teacher.model.name_or_path)
    lat_t, lat_s = (m["1"]["median_ms"] for m in measure_latency([teacher_dir, result.student_dir], batch_sizes=(1,),
                                                                   rounds={1: 15}))
    valid = read_metrics(result.output_dir / "metrics.jsonl", "valid")
    train = read_metrics(result.output_dir / "metrics.jsonl", "train")
    summary = {
        "run_dir": str(out_dir),
        "student_dir": str(result.student_dir),
        "corpus": sources,
        "teacher": {**_footprint(teacher_dir), "latency_ms": lat_t},
        "student": {**_footprint(result.student_dir), "latency_ms": lat_s},
        "speedup": lat_t / lat_s,
        "held_out_loss": {"start": valid[0]["loss"], "end": valid[-1]["loss"]},
        "train_loss": {"start": train[0]["loss"], "end": train[-1]["loss"]},
        "agreement_before": before,
        "agreement_after": after,
        "sts_zeroshot": None if sts is None else {"teacher": zs_teacher, "before": zs_before, "after": zs_after,
                                                  "pairs": len(sts[0]), "pooling": pooling},
        "steps": result.summary["steps"],
        "tokens_seen": result.summary["tokens_seen"],
        "tokens_per_s": sum(r["tokens_per_s"] for r in train) / len(train),
        "wall_time_s": time.perf_counter() - t0,
        "held_out_blocks": len(held_out),
    }
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "summary.md", summary_markdown(summary))
    return summary


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, teacher, student, comparison) rows of the summary table."""
    t, st = s["teacher"], s["student"]
    b, a = s["agreement_before"], s["agreement_after"]
    return [
        ("parameters", f"{t['parameters'] / 1e6:.1f}M", f"{st['parameters'] / 1e6:.1f}M",
         f"{t['parameters'] / st['parameters']:.2f}x smaller"),
        ("size on disk", f"{t['disk_mb']:.1f} MB", f"{st['disk_mb']:.1f} MB", f"{t['disk_mb'] / st['disk_mb']:.2f}x smaller"),
        ("CPU latency (batch 1, 128 tokens)", f"{t['latency_ms']:.1f} ms", f"{st['latency_ms']:.1f} ms",
         f"{s['speedup']:.2f}x faster"),
        ("held-out distillation loss", "", f"{s['held_out_loss']['start']:.3f} -> {s['held_out_loss']['end']:.3f}",
         f"{s['steps']} steps, {s['tokens_seen']:,} tokens, {s['tokens_per_s']:,.0f} tokens/s"),
        ("agreement: token cosine", "1.000", f"{b['token_cosine']:.3f} -> {a['token_cosine']:.3f}", "before -> after"),
        ("agreement: sentence cosine", "1.000", f"{b['sentence_cosine']:.3f} -> {a['sentence_cosine']:.3f}",
         "before -> after"),
        *([] if not s.get("sts_zeroshot") else [(
            "STS-B zero-shot (Spearman x100)", f"{s['sts_zeroshot']['teacher']:.1f}",
            f"{s['sts_zeroshot']['before']:.1f} -> {s['sts_zeroshot']['after']:.1f}",
            f"before -> after; {s['sts_zeroshot']['pairs']} dev pairs, {s['sts_zeroshot']['pooling']} pooling")]),
    ]


def summary_markdown(s: dict[str, Any]) -> str:
    lines = ["| | teacher | student | |", "|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in summary_rows(s)]
    return "\n".join(lines) + (f"\n\nstudent: `{s['student_dir']}`; corpus: {', '.join(s['corpus'])} "
                                f"({s['held_out_blocks']} held-out blocks); wall time {s['wall_time_s']:.0f} s\n")
