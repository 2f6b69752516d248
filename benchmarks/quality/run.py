"""Quality benchmark (issue 12), phase 1 "screen": does distillation beat no distillation, and with what settings?

Packaged teacher (all-MiniLM-L6-v2) -> 3-layer, 384-wide students (and 4-layer, 256-wide ETD-extracted ones: the
``*-4x256`` entries; ``distilbert-triple-*`` uses the MLM head fitted by ``teacher.fit_mlm_head``; both added after
the first screen, to run next). Two kinds of candidates:

* **baselines**: teacher layers copied (``init: select``), no distillation at all - what a user gets for free;
* **distilled**: one factor changed at a time from ``recipes/tinybert-3l.yaml`` as shipped before this screen (objective, attention
  target, which layers are copied, where the mapping points, learning rate), at one fixed token budget.

Every candidate is scored by two cheap signals: zero-shot STS-B (Spearman of pooled-embedding cosines on the 1,500
dev pairs, the teacher's mean pooling, no training) and the proxy STS-B fine-tuning (2,000 training pairs, 2
epochs, 64 tokens, lr 1e-4, [CLS] regression head, 500 dev pairs, one seed) that exposes weights which embed well but
fine-tune badly. Phase 2 (full fine-tuning of the best 2-3 and the best baseline on RTE/MRPC/STS-B/CoLA/SST-2 with 3
seeds) is ``--phase finetune --only NAME ...``: it spans several sessions on 2 CPU cores (see :func:`finetune`).
A phase 2 name ``recipe-NAME`` is ``recipes/NAME.yaml`` as shipped, at its own budget, distilled first
(``recipe-NAME@stepsN``: at ``N`` steps instead).

    python benchmarks/quality/run.py [--steps 150 --batch-size 16 --out-dir runs/quality] [--only NAME ...]

Phase ``curve`` scores one long run of the shipped recipe at several budgets; phase ``schedule`` fine-tunes the
teacher, the untrained baseline and the shipped student on some tasks (``--task``, STS-B by default) with the default
task recipe at 3 and at 6 epochs, and on STS-B also under the proxy's (was the student weak, or its fine-tuning too
short?).

Resumable: finished candidates are reused (same recipe), interrupted ones resume from their last checkpoint, scores
come from the evaluation cache; results are rewritten after every candidate. Writes
``benchmarks/quality/results/screen.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import torch
import yaml

from bertpress.atomic import atomic_dir, atomic_write_json, atomic_write_text
from bertpress.data.corpus import load_corpus
from bertpress.data.tasks.files import default_data_dir
from bertpress.evaluate.cache import ResultCache
from bertpress.evaluate.latency import conditions
from bertpress.evaluate.proxy import proxy_settings
from bertpress.evaluate.settings import resolve_settings
from bertpress.evaluate.stats import paired_bootstrap_spearman, paired_test
from bertpress.evaluate.suite import ModelSpec, evaluate_model
from bertpress.evaluate.tasks import load_task
from bertpress.init import InitContext, initialise
from bertpress.models.teacher import PACKAGED_TEACHER, STUDENT_DIR, resolve_model
from bertpress.recipe import recipe_from_dict
from bertpress.train.build import build_run
from bertpress.train.callbacks import Callback
from bertpress.train.checkpoint import latest_checkpoint
from bertpress.train.init_average import average_with_init, snapshot
from bertpress.train.run import distill, initialise_student, sample_batches

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "results"
CORPUS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"

#: Untrained baselines (no distillation): the student section that builds them. 3L-384H: teacher layers copied
#: (1-based); 4L-256H: ETD's importance-based extraction of the teacher's layers 1, 3, 5, 6 (the top one kept, as the
#: 3L screen chose) or of the default every-other layers.
SHAPE_4X256 = {"num_layers": 4, "hidden_size": 256, "num_heads": 8, "intermediate_size": 1024}
BASELINES: dict[str, dict[str, Any]] = {
    "copy-1-3-5": {"num_layers": 3, "init": "select", "init_args": {"layers": [1, 3, 5]}},
    "copy-1-3-6": {"num_layers": 3, "init": "select", "init_args": {"layers": [1, 3, 6]}},
    "copy-2-4-6": {"num_layers": 3, "init": "select", "init_args": {"layers": [2, 4, 6]}},
    "etd-4x256-1-3-5-6": {**SHAPE_4X256, "init": "etd-impt", "init_args": {"layers": [1, 3, 5, 6]}},
    "etd-4x256-skip": {**SHAPE_4X256, "init": "etd-impt", "init_args": {"layers": "skip"}},
}
def top_matches(hidden_loss: str, pairs: Sequence[tuple[int, int]] = ((0, 0), (1, 1), (2, 3), (3, 6)),
                attention: str = "probabilities") -> list[dict[str, Any]]:
    """tinybert-top-probs's matches (student layers 1-3 <- teacher 1, 3, 6, or other ``pairs``: embedding and hidden
    MSE, attention probabilities MSE) with ``hidden_loss`` for the embedding and hidden states; ``attention: kl``
    matches the attention distributions by KL instead (MiniLM's, summed over keys: the probabilities' MSE, a mean
    over the 128 keys, is about 1% of the hidden term at step 0 and changes nothing, see tinybert-top-no-attention)."""
    att = ({"loss": "relation_kl", "kind": "attention_scores"} if attention == "kl" else
           {"loss": "attention_mse", "kind": "attention_probs"})
    return [*({"student": f"hidden:{s}", "teacher": f"hidden:{t}", "loss": hidden_loss, "term": "hidden" if s else
               "embedding"} for s, t in pairs),
            *({"student": f"{att['kind']}:{s}", "teacher": f"{att['kind']}:{t}", "loss": att["loss"],
               "term": "attention"} for s, t in pairs[1:])]


def cls_mean_match(weight: float, student_layer: int = 3) -> dict[str, Any]:
    """The student's top-layer [CLS] state against the teacher's mean-pooled last layer (its sentence embedding)."""
    return {"student": f"hidden:{student_layer}", "teacher": "hidden:6", "loss": "pooled_mse", "weight": weight,
            "term": "cls_mean"}


def cls_relation_match(weight: float) -> dict[str, Any]:
    """A batch-similarity match of the student's top-layer (3) [CLS] vectors to the teacher's (6)."""
    return {"student": "hidden:3", "teacher": "hidden:6", "loss": "batch_similarity_mse", "weight": weight,
            "term": "cls_relation", "projection": False, "options": {"pool": "cls"}}


#: Distilled candidates: changes to the tinybert-3l recipe as shipped before the screen (init layers [1, 3, 5], uniform mapping [2, 4, 6],
#: embedding + hidden + attention-score MSE, lr 2e-4, 6% warm-up).
CANDIDATES: dict[str, dict[str, Any]] = {
    "tinybert-shipped": {},
    "tinybert-aligned-2-4-6": {"init_layers": [2, 4, 6]},
    "tinybert-top-1-3-6": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6]},
    "tinybert-top-probs": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6],
                           "objective": {"attention_on": "probabilities"}},
    "tinybert-top-no-attention": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6], "objective": {"attention": 0.0}},
    "tinybert-top-lr5e-5": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6], "lr": 5e-5},
    "minilm-top-1-3-6": {"init_layers": [1, 3, 6], "objective": {"name": "minilm", "attention": 1.0, "value": 1.0}},
    "distilbert-cos-top-1-3-6": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6],
                                 "objective": {"name": "distilbert", "alpha_ce": 0.0, "alpha_mlm": 0.0,
                                               "alpha_cos": 1.0, "cosine_layers": "mapping"}},
    # DistilBERT's full triple loss, on a head fitted to the frozen teacher (teacher.fit_mlm_head, issue 12 item 6)
    "distilbert-triple-top-1-3-6": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6], "fit_mlm_head": {"steps": 500},
                                    "objective": {"name": "distilbert", "cosine_layers": "mapping"}},
    # 4L-256H (ETD-extracted) students with the settings the 3L screen chose
    # (these two ran before student.head_match existed: attention compared over Q/K regrouped into 8 relation heads)
    "tinybert-probs-4x256": {"student": {**BASELINES["etd-4x256-1-3-5-6"], "head_match": "regrouped"},
                             "mapping": [1, 3, 5, 6],
                             "objective": {"attention_on": "probabilities"}},
    # the same, the hidden-state projection started as the extracted dims' selection (student.projection_init)
    "tinybert-probs-4x256-aligned": {"student": {**BASELINES["etd-4x256-1-3-5-6"], "projection_init": "extracted",
                                                 "head_match": "regrouped"},
                                     "mapping": [1, 3, 5, 6], "objective": {"attention_on": "probabilities"}},
    # the same, each student head's attention matched with the teacher head it was extracted from (student.head_match)
    # instead of both sides' Q/K regrouped into 8 relation heads of 48 teacher dims (each a mix of teacher heads)
    "tinybert-probs-4x256-heads": {"student": {**BASELINES["etd-4x256-1-3-5-6"], "projection_init": "extracted",
                                               "head_match": "extracted"},
                                   "mapping": [1, 3, 5, 6], "objective": {"attention_on": "probabilities"}},
    # TinyBERT's own attention term (raw-score MSE, the preset's default), which is large enough to act: student
    # heads against Q/K regrouped into 8 relation heads, or each against the teacher head it was extracted from
    "tinybert-scores-4x256": {"student": {**BASELINES["etd-4x256-1-3-5-6"], "projection_init": "extracted",
                                          "head_match": "regrouped"}, "mapping": [1, 3, 5, 6]},
    "tinybert-scores-4x256-heads": {"student": {**BASELINES["etd-4x256-1-3-5-6"], "projection_init": "extracted",
                                                "head_match": "extracted"}, "mapping": [1, 3, 5, 6]},
    # attention distributions matched by KL (MiniLM's) instead of the probabilities' MSE, which is too small to act;
    # with head_match extracted each student head learns the teacher head it came from
    "tinybert-4x256-attkl": {"student": {**BASELINES["etd-4x256-1-3-5-6"], "projection_init": "extracted",
                                         "head_match": "extracted"}, "mapping": [1, 3, 5, 6],
                             "objective": {"name": "matches", "matches": top_matches(
                                 "mse", ((0, 0), (1, 1), (2, 3), (3, 5), (4, 6)), attention="kl")}},
    "tinybert-top-attkl": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6],
                           "objective": {"name": "matches", "matches": top_matches("mse", attention="kl")}},
    # tinybert-top-probs plus the teacher's sentence embedding (its mean-pooled last layer) taught to the student's
    # [CLS] position, which a classification head reads (pooled_mse); weight 1: about the hidden term's size at step 0
    "tinybert-top-probs-clsmean": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6], "objective": {
        "name": "matches", "matches": [*top_matches("mse"), cls_mean_match(1.0)]}},
    "tinybert-top-probs-clsmean5": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6], "objective": {
        "name": "matches", "matches": [*top_matches("mse"), cls_mean_match(5.0)]}},
    # the shipped student distilled on pairs of consecutive sentences ([CLS] a [SEP] b [SEP], segment ids) instead
    # of packed single-segment blocks: the input shape of every pair task, which blocks never show the student
    # (16 pairs a step: 307,200 positions, fewer real tokens since pairs are padded to the longest of the batch)
    "tinybert-top-probs-pairs": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6], "data": {"unit": "pairs"},
                                 "objective": {"attention_on": "probabilities"}},
    "minilm-4x256": {"student": BASELINES["etd-4x256-1-3-5-6"],
                     "objective": {"name": "minilm", "attention": 1.0, "value": 1.0}},
    # tinybert-top-probs with a scale-free hidden term instead of the MSE that shrinks the last layer towards the
    # mean (benchmarks/quality/shrinkage.py): per-token layer-normalised MSE, or the cosine (DistilBERT's)
    "tinybert-top-probs-lnmse": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6],
                                 "objective": {"name": "matches", "matches": top_matches("layer_norm_mse")}},
    "tinybert-top-probs-cos": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6],
                               "objective": {"name": "matches", "matches": top_matches("cosine")}},
    # tinybert-top-probs plus a term on how the batch's [CLS] vectors relate at the top layer
    # (batch_similarity_mse): their variation across inputs, which a [CLS] head reads, shrank to 62% of the
    # teacher's in the long run (shrinkage.py). Weight 20: about the hidden term's size at step 0 (copy-1-3-6 on
    # 3 x 16 Wikipedia blocks: [CLS] relation 0.003-0.009, hidden MSE 0.09)
    "tinybert-top-probs-clsrel": {"init_layers": [1, 3, 6], "mapping": [1, 3, 6], "objective": {
        "name": "matches", "matches": [*top_matches("mse"), cls_relation_match(20.0)]}},
}


def make_recipe(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The tinybert-3l recipe as shipped before the screen, with one candidate's changes, at the benchmark's budget."""
    change = CANDIDATES[name]
    objective = {"name": "tinybert", "embedding": 1.0, "hidden": 1.0, "attention": 1.0}
    objective = {**objective, **change.get("objective", {})} if change.get("objective", {}).get("name") in (
        None, "tinybert") else dict(change["objective"])
    student: dict[str, Any] = dict(change.get("student", {"num_layers": 3, "init": "select"}))
    if "init_layers" in change:
        student["init_args"] = {"layers": change["init_layers"]}
    teacher: dict[str, Any] = {"name_or_path": PACKAGED_TEACHER}
    if "fit_mlm_head" in change:
        teacher["fit_mlm_head"] = change["fit_mlm_head"]
    recipe = {
        "name": f"quality-{name}", "seed": args.seed, "output_dir": str(args.out_dir / name),
        "teacher": teacher, "student": student,
        "data": {"sources": [str(default_data_dir() / CORPUS)], "block_size": 128, "max_validation_blocks": 64,
                 **change.get("data", {})},
        "objective": objective,
        "mapping": {"strategy": "explicit", "layers": change["mapping"]} if "mapping" in change else {"strategy": "uniform"},
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "lr": change.get("lr", 2e-4),
                  "warmup_ratio": 0.06, "eval_every": max(1, args.steps // 5), "save_every": max(1, args.steps // 3),
                  "log_every": 5, "mixed_precision": "no"},  # fp32, as every screened candidate was distilled
    }
    return recipe_from_dict(recipe).to_dict()


def run_distillation(recipe: dict[str, Any], callbacks: tuple[Callback, ...] = ()) -> dict[str, Any]:
    """Distil (reusing a finished run of the same recipe, resuming an interrupted one); returns its summary."""
    out = Path(recipe["output_dir"])
    done, saved = out / "bertpress.json", out / "recipe.yaml"
    def same(saved_recipe: dict[str, Any]) -> bool:  # read through today's schema: new fields take their defaults
        return recipe_from_dict(saved_recipe).to_dict() == recipe

    if done.is_file() and same(json.loads(done.read_text())["recipe"]):
        return json.loads(done.read_text())
    resume = (not done.is_file() and saved.is_file() and same(yaml.safe_load(saved.read_text()))
              and latest_checkpoint(out / "checkpoints") is not None)
    print(f"[quality] {'resuming' if resume else 'starting'} {out}", flush=True)
    return distill(recipe, resume=resume, overwrite=not resume, callbacks=list(callbacks)).summary


def make_baseline(name: str, out_dir: Path) -> Path:
    """An untrained student: the chosen teacher layers copied, saved like a distilled student."""
    path = out_dir / name
    if (path / "model.safetensors").is_file():
        return path
    student = BASELINES[name]
    run = build_run({"seed": 0, "output_dir": str(path), "teacher": {"name_or_path": PACKAGED_TEACHER},
                     "student": student, "data": {"sources": [str(default_data_dir() / CORPUS)]}})
    corpus = load_corpus(run.recipe.data, run.tokenizer, seed=0)  # ETD's importance is measured on the corpus
    sample = sample_batches(corpus, 16, 0)
    plan = initialise(student["init"], InitContext(run.teacher, run.student, 0, sample, path), student["init_args"])
    run.student.save_pretrained(path)
    run.teacher.tokenizer.save_pretrained(path)
    atomic_write_json(path / "bertpress.json", {"teacher": {"source": PACKAGED_TEACHER}, "student": student,
                                                "init": plan.get("layers", student["init_args"]["layers"])})
    return path


def score(path: Path, label: str, cache: ResultCache, long_proxy: bool = False) -> dict[str, float]:
    """Zero-shot STS-B (full dev) and proxy-fine-tuned STS-B of one model directory; ``long_proxy`` adds the proxy
    at :data:`LONG_PROXY_EPOCHS` epochs (``proxy_stsb_long``), which 3-layer students need (phase schedule)."""
    tasks = [load_task("stsb-zeroshot", default_data_dir(), "tsv"), load_task("stsb", default_data_dir(), "tsv")]
    settings = {**resolve_settings(["stsb-zeroshot"]), **proxy_settings(["stsb"])}
    spec = ModelSpec(label, Path(resolve_model(str(path))))
    results = evaluate_model(spec, tasks, settings, cache, progress=False)
    out = {"zeroshot": results["stsb-zeroshot"]["mean"]["score"], "proxy_stsb": results["stsb"]["mean"]["score"]}
    if long_proxy:
        long = proxy_settings(["stsb"], [f"epochs={LONG_PROXY_EPOCHS}"])
        out["proxy_stsb_long"] = evaluate_model(spec, tasks[1:], long, cache, progress=False)["stsb"]["mean"]["score"]
    return out


def shape_of(name: str) -> str:
    """``6L-384H`` (the teacher), else the student shape of a baseline or candidate (3L-384H unless it says)."""
    if name == "teacher":
        return "6L-384H"
    return student_shape(BASELINES.get(name) or CANDIDATES.get(name, {}).get("student") or {"num_layers": 3})


def student_shape(student: dict[str, Any]) -> str:
    """``NL-HH`` of a recipe's student section (hidden size unset or None: the teacher's 384)."""
    return f"{student['num_layers']}L-{student.get('hidden_size') or 384}H"


def write_report(report: dict[str, Any], results: Path = RESULTS) -> None:
    """``screen.json`` (everything), ``screen.md`` (the table) and ``screen.png`` (zero-shot vs proxy) in ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "screen.json", report)
    rows = report["rows"]
    best_base = {shape: max((r for r in rows if r["kind"] == "baseline" and shape_of(r["name"]) == shape),
                            key=lambda r: r["proxy_stsb"], default=None) for shape in map(shape_of, (r["name"] for r in rows))}
    b = report["budget"]
    lines = [
        "# Quality screen: distilled 3-layer students against the same students without distillation", "",
        f"Teacher `{PACKAGED_TEACHER}` (6L-384H). Every distilled candidate: {b['steps']} steps x {b['batch_size']} "
        f"blocks x 128 tokens = {b['tokens']:,} tokens of the Wikipedia shards, seed {b['seed']}, the same data "
        "order; one factor changed at a time from `recipes/tinybert-3l.yaml` as shipped before this screen (copy "
        "layers 1, 3, 5, uniform mapping 2, 4, 6, raw-score attention MSE; `tinybert-shipped`). Scores x100: zero-shot "
        "STS-B = Spearman of mean-pooled embedding cosines on the 1,500 dev pairs (no training); proxy STS-B = "
        "mean of Pearson and Spearman after fine-tuning on 2,000 training pairs (2 epochs, 64 tokens, lr 1e-4, one "
        "seed, 500 dev pairs). One seed: differences of a point or two are within noise (phase 2 adds seeds).", "",
        f"Command: `{report['command']}`; machine: {report['machine']['cpu']}, {report['machine']['cpu_count']} cores, "
        f"load average at start {report['machine']['load_average']}.", "",
        "| candidate | shape | kind | copied layers | mapping | held-out loss start -> end | zero-shot STS-B | "
        "proxy STS-B | vs best baseline of its shape (proxy) | distil time (s) |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: shape_of(r["name"]) != "6L-384H"):
        loss = f"{r['loss_start']:.3f} -> {r['loss_end']:.3f}" if r.get("loss_end") is not None else "-"
        base = best_base.get(shape_of(r["name"]))
        delta = f"{r['proxy_stsb'] - base['proxy_stsb']:+.1f}" if base and r["kind"] != "teacher" else ""
        lines.append(f"| {r['name']} | {shape_of(r['name'])} | {r['kind']} | {r.get('layers', '-')} | "
                     f"{r.get('mapping', '-')} | {loss} | "
                     f"{r['zeroshot']:.1f} | {r['proxy_stsb']:.1f} | {delta} | {r.get('train_time_s', '-')} |")
    atomic_write_text(results / "screen.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in rows:
        marker = {"teacher": "*", "baseline": "s", "distilled": "o"}[r["kind"]]
        ax.scatter(r["zeroshot"], r["proxy_stsb"], marker=marker, s=60)
        ax.annotate(r["name"], (r["zeroshot"], r["proxy_stsb"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("zero-shot STS-B (Spearman x100)")
    ax.set_ylabel("proxy fine-tuned STS-B (x100)")
    ax.set_title("3-layer students: squares = no distillation, circles = distilled")
    fig.tight_layout()
    fig.savefig(results / "screen.png")
    plt.close(fig)


#: Phase 2 tasks: the default `bertpress evaluate` recipes (3 seeds on RTE, MRPC, STS-B, CoLA), SST-2 capped.
FINETUNE_TASKS = ("rte", "mrpc", "stsb", "cola", "sst2", "stsb-zeroshot")
SST2_CAP = 20_000


#: Phase 2 results are cached inside the repository, so the phase continues in another session or on another machine
#: (the distilled students are rebuilt bit for bit by the screen; the cache key hashes their weights).
FINETUNE_CACHE = RESULTS / "finetune" / "cache"


def finetune(models: list[str], args: argparse.Namespace) -> None:
    """Phase 2: full fine-tuning of ``models`` (screen names, or ``teacher``) with the default task recipes.

    Models run in the order given; every (model, task, seed) result is cached in :data:`FINETUNE_CACHE` as soon as
    it finishes, so an interrupted phase continues where it stopped. After each model the report
    (``results/finetune/results.{json,md}`` or ``--report-dir``, the ``bertpress evaluate`` report, and
    ``margins.md``; retention columns once the teacher is done) is rewritten with the models finished so far. On the 2 CPU cores one 3-layer student takes about an
    hour and the teacher about two, so the phase spans sessions.
    """
    from bertpress.evaluate.compare import run_compare
    from bertpress.evaluate.report import write_report as write_eval_report

    cache = ResultCache(FINETUNE_CACHE)
    specs = {}
    for name in models:
        specs[name] = ModelSpec(name, model_path(name, args.out_dir))
    tasks = [load_task(t, default_data_dir(), "tsv") for t in FINETUNE_TASKS]
    overrides = [f"sst2.max_train_examples={SST2_CAP}"] + ([f"lr_grid={json.dumps(args.lr_grid)}"] if args.lr_grid else [])
    settings = resolve_settings(list(FINETUNE_TASKS), overrides)
    command = shlex.join(["python", "benchmarks/quality/run.py", *sys.argv[1:]])
    out = args.report_dir or RESULTS / "finetune"
    for done in range(1, len(models) + 1):
        finished = models[:done]
        students = [specs[n] for n in finished if n != "teacher"]
        report = run_compare(students, tasks, settings, cache, teacher=specs.get("teacher") if "teacher" in finished
                             else None, latency=False, data_dir=default_data_dir(), command=command, progress=False)
        write_eval_report(report, out)
        results = json.loads((out / "results.json").read_text())
        write_margins(results, out, paths={n: specs[n].path for n in finished if n != "teacher"})
        write_budget(results, out)
        print(f"[quality] finetune: {', '.join(finished)} done", flush=True)


def seed_averages(model: dict[str, Any], tasks: Sequence[str]) -> dict[int, float]:
    """Fine-tuning seed -> the model's average over ``tasks`` with that seed (a task run with one seed, or none, adds
    the same score to every seed's average); empty when no task ran several seeds. Their spread is the average's."""
    per_seed: dict[str, dict[int, float]] = {}
    for t in tasks:
        runs = model["tasks"][t].get("runs") or []
        if len(runs) > 1:
            per_seed[t] = {r["seed"]: r["metrics"]["score"] for r in runs}
    if not per_seed:
        return {}
    seeds = sorted(set.intersection(*(set(s) for s in per_seed.values())))
    return {s: sum(per_seed[t][s] if t in per_seed else model["tasks"][t]["mean"]["score"] for t in tasks) / len(tasks)
            for s in seeds}


@functools.cache
def zeroshot_similarities(model_dir: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The zero-shot task's per-pair cosine similarities of ``model_dir`` on the STS-B dev pairs (its settings and
    the model's pooling, as ``bertpress evaluate`` scores it), and the gold scores."""
    from transformers import AutoModel, AutoTokenizer

    from bertpress.evaluate.zeroshot import pair_similarities
    from bertpress.models.pooling import model_pooling

    settings = resolve_settings(["stsb-zeroshot"])["stsb-zeroshot"]
    examples = next(iter(load_task("stsb-zeroshot", default_data_dir(), "tsv").dev.values()))
    examples = examples[:settings.max_eval_examples]
    pooling = settings.pooling if settings.pooling != "auto" else model_pooling(model_dir)[0]
    sims = pair_similarities(AutoModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir),
                             [(e.text_a, e.text_b or "") for e in examples], pooling=pooling,
                             max_length=settings.max_length, batch_size=settings.eval_batch_size)
    return tuple(sims), tuple(float(e.label) for e in examples)


def zeroshot_bootstrap(student: Path, baseline: Path) -> dict[str, Any]:
    """Paired bootstrap over the STS-B dev pairs of the student's zero-shot Spearman minus the baseline's."""
    (a, gold), (b, _) = zeroshot_similarities(student), zeroshot_similarities(baseline)
    return paired_bootstrap_spearman(gold, a, b)


#: Issue 12's retention goals (% of the teacher's fine-tuned average) per student shape.
RETENTION_GOALS = {"3L-384H": 95.0, "4L-256H": 92.0}


def write_margins(report: dict[str, Any], out: Path, paths: dict[str, Path] | None = None) -> None:
    """``margins.md`` and ``results.png`` of phase 2 (``report``: the ``bertpress evaluate`` results.json): each
    distilled model's margin per task over the best untrained baseline in the report (highest average), with the
    spread ``sqrt(std_a² + std_b²)`` where both ran several seeds (for the average: the std of the per-seed averages,
    :func:`seed_averages`), and its retention of the teacher's average. With ``paths`` (label -> model directory) the
    zero-shot margin also gets its paired-bootstrap 95% interval over the dev pairs (:func:`zeroshot_bootstrap`)."""
    models = {m["label"]: m for m in report["models"]}
    names = {t["name"]: t["title"] for t in report["tasks"]}
    tasks = list(names)
    teacher = next((m for m in report["models"] if m["role"] == "teacher"), None)
    baselines = [m for name, m in models.items() if name in BASELINES]
    students = [m for name, m in models.items() if name not in BASELINES and m["role"] != "teacher"]
    fig, ax = plt.subplots(figsize=(9, 4))
    shown = ([teacher] if teacher else []) + baselines + students
    width = 0.8 / max(len(shown), 1)
    for i, m in enumerate(shown):
        means = [m["tasks"][t]["mean"]["score"] for t in tasks]
        errs = [m["tasks"][t].get("std", {}).get("score", 0.0) or 0.0 for t in tasks]
        ax.bar([k + i * width for k in range(len(tasks))], means, width, yerr=errs, capsize=2, label=m["label"])
    ax.set_xticks([k + width * (len(shown) - 1) / 2 for k in range(len(tasks))], [names[t] for t in tasks])
    ax.set_ylabel("dev score (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    plt.close(fig)
    if not baselines or not students:
        return
    best = max(baselines, key=lambda m: m["average"])
    lines = ["# Phase 2: margin over no distillation and retention of the teacher", "",
             f"Margin = distilled minus the best untrained baseline in the table (`{best['label']}`, average "
             f"{best['average']:.1f}); ± = sqrt(std² + std²) over seeds where both ran several (one seed: no spread; "
             "average: std of the per-seed averages, a one-seed task adding its score to each). **Bold**: beyond that "
             "spread. Paired test: the per-seed averages of the model and the baseline paired by fine-tuning seed "
             "(two-sided paired t-test).", "",
             "| model | " + " | ".join(names[t] for t in tasks) + " | average | paired test | retention |",
             "|:--|" + "--:|" * (len(tasks) + 1) + ":--|--:|"]
    boot = {m["label"]: zeroshot_bootstrap(paths[m["label"]], paths[best["label"]]) for m in students
            if paths and m["label"] in paths and best["label"] in paths and "stsb-zeroshot" in tasks}
    for m in students:
        cells = []
        for t in tasks:
            a, b = m["tasks"][t], best["tasks"][t]
            diff = a["mean"]["score"] - b["mean"]["score"]
            sa, sb = (a.get("std") or {}).get("score"), (b.get("std") or {}).get("score")
            if sa is not None and sb is not None and a.get("n", 1) > 1 and b.get("n", 1) > 1:
                spread = math.hypot(sa, sb)
                cell = f"{diff:+.1f} ± {spread:.1f}"
                cells.append(f"**{cell}**" if abs(diff) > spread else cell)
            elif t == "stsb-zeroshot" and m["label"] in boot:
                lo, hi = boot[m["label"]]["ci95"]
                cell = f"{diff:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                cells.append(f"**{cell}**" if lo > 0 or hi < 0 else cell)
            else:
                cells.append(f"{diff:+.1f}")
        retention = f"{100 * m['average'] / teacher['average']:.1f}%" if teacher else "n/a"
        diff, sa, sb = m["average"] - best["average"], seed_averages(m, tasks), seed_averages(best, tasks)
        average, test = f"{diff:+.1f}", "-"
        if len(sa) > 1 and len(sb) > 1:
            spread = math.hypot(statistics.stdev(sa.values()), statistics.stdev(sb.values()))
            average = f"{diff:+.1f} ± {spread:.1f}"
            average = f"**{average}**" if abs(diff) > spread else average
        if len(common := sorted(sa.keys() & sb.keys())) > 1:
            p = paired_test([sa[k] for k in common], [sb[k] for k in common])
            test = f"{p['wins']}/{p['n']} seeds, p = {p['p_value']:.3f}"
        lines.append(f"| {m['label']} | " + " | ".join(cells) + f" | {average} | {test} | {retention} |")
    if boot:
        lines += ["", "Zero-shot STS-B has no fine-tuning seed: its [interval] is the 95% paired-bootstrap interval "
                  f"of the difference over the {next(iter(boot.values()))['n']:,} dev pairs "
                  f"({next(iter(boot.values()))['resamples']:,} resamples, the same draw for both models); **bold**: "
                  "it excludes 0."]
    grids = sorted({lr for m in shown for t in tasks for lr in m["tasks"][t].get("grid") or {}}, key=float)
    if len(grids) > 1:
        chosen = "; ".join(f"{m['label']}: " + ", ".join(f"{names[t]} {m['tasks'][t]['lr']:g}" for t in tasks
                                                         if m["tasks"][t].get("lr")) for m in shown)
        lines += ["", f"Fine-tuning learning rate: each model's best of {', '.join(grids)} per task by mean dev score "
                  "over its seeds, chosen on the dev set that is reported (the same rule for every model; each "
                  f"chosen score is an optimistic estimate of that model's). Chosen: {chosen}."]
    if teacher:
        shape = student_shape(BASELINES[best["label"]]) if best["label"] in BASELINES else None
        lines += ["", f"Teacher average {teacher['average']:.1f}; {best['label']} keeps "
                  f"{100 * best['average'] / teacher['average']:.1f}%. Goal (issue 12): >= "
                  f"{RETENTION_GOALS.get(shape, 95.0):g}%{f' for {shape}' if shape else ''} and a margin beyond the "
                  "spread on the average and on zero-shot STS-B."]
    (out / "margins.md").write_text("\n".join(lines) + "\n")


def budget_series(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Shipped recipe -> its students in ``report`` at two or more distillation budgets (``recipe-NAME`` and
    ``recipe-NAME@stepsN``), fewest tokens first."""
    series: dict[str, list[dict[str, Any]]] = {}
    for m in report["models"]:
        if m["label"].startswith(RECIPE_PREFIX) and AVERAGE_MARK not in m["label"]:
            series.setdefault(m["label"][len(RECIPE_PREFIX):].split(STEPS_MARK)[0], []).append(m)
    return {name: sorted(ms, key=lambda m: m["training"]["tokens"]) for name, ms in series.items()
            if len({m["training"]["tokens"] for m in ms}) > 1}


def budget_fit(tokens: Sequence[float], scores: Sequence[float], target: float) -> dict[str, float | None]:
    """Least-squares line ``score = a + b·log2(tokens)`` through the distilled points and the tokens at which it
    reaches ``target`` (None when it does not rise): an extrapolation, not a measurement."""
    b, a = statistics.linear_regression([math.log2(t) for t in tokens], scores)
    return {"intercept": a, "per_doubling": b, "target": target,
            "tokens_for_target": 2 ** ((target - a) / b) if b > 0 else None}


def write_budget(report: dict[str, Any], out: Path) -> None:
    """``budget.{json,md,png}`` in ``out`` for every shipped recipe fine-tuned at several budgets
    (:func:`budget_series`): every task's score, the average and retention per budget against the best untrained baseline,
    and the log-linear extrapolation (:func:`budget_fit`) of the average to the shape's retention goal."""
    series = budget_series(report)
    teacher = next((m for m in report["models"] if m["role"] == "teacher"), None)
    baselines = [m for m in report["models"] if m["label"] in BASELINES]
    if not series or teacher is None or not baselines:
        return
    best = max(baselines, key=lambda m: m["average"])
    names = {t["name"]: t["title"] for t in report["tasks"]}
    tasks = list(names)
    lines = ["# Score vs distillation budget (full fine-tuning)", "",
             "The same shipped recipe distilled for more steps (`recipe-NAME@stepsN`: only `train.max_steps` "
             "changes, the schedule stretched with it), each fine-tuned as in `results.md`; 0 tokens is the best "
             f"untrained baseline in the report (`{best['label']}`). Extrapolation: least-squares line of the average "
             "against log2(tokens) through the distilled points, solved for the retention goal; an extrapolation "
             "from few points, not a measurement.", ""]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    fits = {}
    for name, models in series.items():
        shape = student_shape(shipped_recipe(name, out)["student"])
        goal = RETENTION_GOALS.get(shape, 95.0)
        tokens = [m["training"]["tokens"] for m in models]
        fit = fits[name] = {"shape": shape, "goal_retention": goal,
                            **budget_fit(tokens, [m["average"] for m in models], goal * teacher["average"] / 100)}
        lines += [f"## {name} ({shape}; goal {goal:g}% = average {fit['target']:.1f})", "",
                  "| tokens | model | " + " | ".join(names[t] for t in tasks) + " | average | retention |",
                  "|--:|:--|" + "--:|" * (len(tasks) + 2)]
        for m in [best, *models]:
            spent = 0 if m is best else m["training"]["tokens"]
            cells = [f"{m['tasks'][t]['mean']['score']:.1f}" for t in tasks]
            lines.append(f"| {spent / 1e6:.1f}M | {m['label']} | " + " | ".join(cells)
                         + f" | {m['average']:.1f} | {100 * m['average'] / teacher['average']:.1f}% |")
        reach = fit["tokens_for_target"]
        lines += ["", f"Average per doubling of the tokens: {fit['per_doubling']:+.2f}; "
                  + (f"the goal is reached at about {reach / 1e6:,.0f}M tokens ({reach / tokens[-1]:.1f}x the largest "
                     "budget run)" if reach is not None else
                     "more tokens do not reach the goal (the average does not rise with them)") + ".", ""]
        line = ax.plot([t / 1e6 for t in tokens], [m["average"] for m in models], "o-", label=f"{name} ({shape})")[0]
        if reach is not None:
            xs = [tokens[-1], max(reach, tokens[-1])]
            ax.plot([x / 1e6 for x in xs], [fit["intercept"] + fit["per_doubling"] * math.log2(x) for x in xs], ":",
                    color=line.get_color(), label=f"{name}: extrapolated")
        ax.axhline(fit["target"], color=line.get_color(), linestyle="--", alpha=0.5, label=f"goal {goal:g}%")
    ax.axhline(best["average"], color="grey", linestyle=":", label=f"{best['label']} (no distillation)")
    ax.axhline(teacher["average"], color="black", linestyle="--", alpha=0.5, label="teacher")
    ax.set_xscale("log")
    ax.set(xlabel="distillation tokens (millions)", ylabel="fine-tuned average (%)",
           title="Fine-tuned average vs distillation budget")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "budget.png")
    plt.close(fig)
    atomic_write_json(out / "budget.json", {"teacher_average": teacher["average"], "baseline": best["label"],
                                            "baseline_average": best["average"], "fits": fits,
                                            "points": {n: [{"label": m["label"], "tokens": m["training"]["tokens"],
                                                            "average": m["average"]} for m in ms]
                                                       for n, ms in series.items()}})
    atomic_write_text(out / "budget.md", "\n".join(lines))


#: Epochs of the longer schedules (phase schedule, ``--long-proxy``): 2 or 3 leave 3-layer students under-trained.
LONG_PROXY_EPOCHS = 6

#: Phase "schedule": is the fine-tuning schedule, not the student, what holds the downstream score down? A task
#: (STS-B by default: the largest teacher-student gap in phase 2) fine-tuned by the default task recipe (full train
#: set, 3 seeds) at BERT's 3 epochs and at 6 (what set the defaults of STS-B and CoLA to 6), and for STS-B also by the screen's proxy (2,000 pairs, 64 tokens,
#: lr 1e-4, one seed) at 2 and 6 epochs. Label -> (which settings, overrides); ``{task}`` is the task's name.
SCHEDULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "proxy, 2 epochs (the screen's)": ("proxy", ()),
    f"proxy, {LONG_PROXY_EPOCHS} epochs": ("proxy", (f"epochs={LONG_PROXY_EPOCHS}",)),
    "full, 3 epochs (BERT's)": ("full", ("{task}.epochs=3",)),
    f"full, {LONG_PROXY_EPOCHS} epochs": ("full", (f"{{task}}.epochs={LONG_PROXY_EPOCHS}",)),
}
SCHEDULE_MODELS = ("teacher", "copy-1-3-6", "tinybert-top-probs")
#: Tasks the schedule phase runs (the proxy rows exist for STS-B only).
SCHEDULE_TASKS = ("stsb", "cola", "mrpc", "rte")


#: Phase 2 model names ``recipe-NAME``: ``recipes/NAME.yaml`` as shipped, at its own budget (distilled on demand).
RECIPE_PREFIX = "recipe-"
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


#: ``recipe-NAME@stepsN``: the shipped recipe with ``train.max_steps: N`` (everything else as shipped, its schedule
#: stretched to the new length), to measure what a larger budget buys.
STEPS_MARK = "@steps"


def shipped_recipe(name: str, out_dir: Path) -> dict[str, Any]:
    """``recipes/NAME.yaml`` unchanged but for where it writes (``out_dir/recipe-NAME``), its corpus paths
    (``../shared/data/...`` read from the data directory setting) and, for ``NAME@stepsN``, ``train.max_steps``."""
    full, steps = name, None
    if STEPS_MARK in name:
        name, count = name.rsplit(STEPS_MARK, 1)
        steps = int(count)
    path = RECIPES / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: name a recipe in {RECIPES} after {RECIPE_PREFIX!r}")
    recipe = yaml.safe_load(path.read_text())
    shared = "../shared/data/"
    recipe["data"]["sources"] = [str(default_data_dir() / s[len(shared):]) if s.startswith(shared) else s
                                 for s in recipe["data"]["sources"]]
    recipe["output_dir"] = str(out_dir / f"{RECIPE_PREFIX}{full}")
    if steps is not None:
        recipe["train"]["max_steps"] = steps
    return recipe_from_dict(recipe).to_dict()


#: ``NAME@avgS``: model NAME's distilled run saved with ``train.average_with_init: S`` (:func:`make_average`).
AVERAGE_MARK = "@avg"


def make_average(name: str, share: float, out_dir: Path) -> Path:
    """``NAME@avgS``: the distilled run behind model ``NAME`` saved as ``(1 - S)·distilled + S·initial`` weights, which
    is what its recipe with ``train.average_with_init: S`` saves (the average acts only at the end, so one
    distillation serves every share). The initial weights are rebuilt as the run built them (same recipe, seed and
    initialiser batches)."""
    path = out_dir / f"{name}{AVERAGE_MARK}{share:g}"
    if (path / "model.safetensors").is_file():
        return path
    student_dir = model_path(name, out_dir)
    run_dir = student_dir.parent if student_dir.name == STUDENT_DIR else student_dir
    if not (run_dir / "recipe.yaml").is_file():
        raise SystemExit(f"{name}{AVERAGE_MARK}{share:g}: {run_dir} is not a distillation run (no recipe.yaml)")
    recipe = recipe_from_dict(yaml.safe_load((run_dir / "recipe.yaml").read_text()))
    run = build_run(recipe)
    initialise_student(recipe, run.teacher, run.student, load_corpus(recipe.data, run.tokenizer, seed=recipe.seed),
                       run_dir)
    model = type(run.student).from_pretrained(student_dir)
    average_with_init(model, snapshot(run.student), share)
    with atomic_dir(path) as tmp:
        shutil.copytree(student_dir, tmp, dirs_exist_ok=True)
        model.save_pretrained(tmp)
        summary = json.loads((tmp / "bertpress.json").read_text()) if (tmp / "bertpress.json").is_file() else {}
        atomic_write_json(tmp / "bertpress.json", {**summary, "average_with_init": {
            "share": share, "made_by": "benchmarks/quality/run.py make_average, after the run"}})
    return path


def model_path(name: str, out_dir: Path) -> Path:
    """The directory of a screened model (``teacher``, a baseline built on demand, a distilled candidate, a shipped
    recipe's student, ``recipe-NAME``, distilled on demand: resumable, reused once finished; ``NAME@avgS``: see
    :func:`make_average`)."""
    if name == "teacher":
        return Path(resolve_model(PACKAGED_TEACHER))
    if AVERAGE_MARK in name:
        base, share = name.rsplit(AVERAGE_MARK, 1)
        return make_average(base, float(share), out_dir)
    if name.startswith(RECIPE_PREFIX):
        run_distillation(shipped_recipe(name[len(RECIPE_PREFIX):], out_dir))
    path = make_baseline(name, out_dir) if name in BASELINES else Path(resolve_model(str(out_dir / name)))
    if not (path / "config.json").is_file():
        raise SystemExit(f"{path} has no model: run the screen for {name!r} first")
    return path


def schedule(models: list[str], args: argparse.Namespace) -> None:
    """Phase "schedule": ``models`` (teacher, untrained baseline, student) fine-tuned on each of ``args.task`` under
    each of :data:`SCHEDULES` that applies to it. The students run first on every task, then the teacher (the
    slowest); every run is cached with phase 2's, so an interrupted phase continues. Writes
    ``results/schedule[-TASK].{json,md,png}`` per task."""
    if len(models) != 3:
        raise SystemExit(f"--phase schedule compares three models (teacher, baseline, student), got {models}")
    specs = [ModelSpec(name, model_path(name, args.out_dir)) for name in models]
    cache = ResultCache(FINETUNE_CACHE)
    data = {task: [load_task(task, default_data_dir(), "tsv")] for task in args.task}

    def schedules(task: str) -> dict[str, tuple[str, dict[str, Any]]]:
        out = {}
        for label, (kind, overrides) in SCHEDULES.items():
            sets = [o.format(task=task) for o in overrides]
            if kind == "proxy" and task == "stsb":
                out[label] = (kind, proxy_settings([task], sets))
            elif kind == "full":
                out[label] = (kind, resolve_settings([task], sets))
        return out

    for spec in (*specs[1:], specs[0]):
        for task in args.task:
            for label, (_, settings) in schedules(task).items():
                result = evaluate_model(spec, data[task], settings, cache, progress=False)[task]
                print(f"[quality] schedule {task} {label} {spec.label}: "
                      f"{[round(r['metrics']['score'], 1) for r in result['runs']]}", flush=True)
    for task in args.task:  # every run is cached by now
        report: dict[str, Any] = {"command": shlex.join(["python", "benchmarks/quality/run.py", *sys.argv[1:]]),
                                  "machine": conditions(), "task": task, "models": models, "rows": []}
        for label, (_, settings) in schedules(task).items():
            row: dict[str, Any] = {"schedule": label, "settings": settings[task].model_dump(), "scores": {}}
            for spec in specs:
                result = evaluate_model(spec, data[task], settings, cache, progress=False)[task]
                row["scores"][spec.label] = [r["metrics"]["score"] for r in result["runs"]]
                row.setdefault("seconds", {})[spec.label] = sum(r["train_seconds"] for r in result["runs"])
            report["rows"].append(row)
        write_schedule(report)


def write_schedule(report: dict[str, Any], results: Path = RESULTS) -> None:
    """``schedule.{json,md,png}`` (STS-B; ``schedule-TASK.*`` for another task): the score per model and fine-tuning
    schedule, the student's retention of the teacher and its margin over the untrained baseline (paired by seed)."""
    from bertpress.evaluate.tasks import TASKS

    task = report.get("task", "stsb")
    info = TASKS[task]
    name = "schedule" if task == "stsb" else f"schedule-{task}"
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / f"{name}.json", report)
    teacher, baseline, student = report["models"]
    full = report["rows"][-1]["settings"]

    def cell(xs: list[float]) -> str:
        return f"{statistics.fmean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"

    proxy = ("Proxy: the screen's setting (2,000 training pairs, 64 tokens, lr 1e-4, batch 32, seed 0, first 500 dev "
             "pairs). " if task == "stsb" else "")
    lines = [
        f"# Is it the student or the fine-tuning schedule? {info.title} under {len(report['rows'])} schedules", "",
        f"`{student}` (the shipped `recipes/tinybert-3l.yaml` student, 307k distillation tokens), `{baseline}` (the "
        f"same teacher layers copied, no distillation) and the {teacher} (all-MiniLM-L6-v2), fine-tuned on "
        f"{info.title} with a [CLS] head. {proxy}Full: `bertpress evaluate`'s {info.title} recipe (whole train "
        f"set, {full['max_length']} tokens, lr {full['lr']:g}, batch {full['batch_size']}, seeds "
        f"{', '.join(str(x) for x in full['seeds'])}, whole dev set). Only the number of epochs changes within each. "
        f"Score: {info.score_name} x100; mean ± sample std over seeds.", "",
        f"Command: `{report['command']}`; machine: {report['machine']['cpu']}, load average at start "
        f"{report['machine']['load_average']}.", "",
        f"| schedule | {teacher} | {baseline} | {student} | retention | margin over {baseline} | paired test |",
        "|---|---:|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        s = r["scores"]
        t, b, x = (statistics.fmean(s[m]) for m in (teacher, baseline, student))
        test = "-"
        if len(s[student]) > 1 and len(s[student]) == len(s[baseline]):
            p = paired_test(s[student], s[baseline])
            test = f"{p['wins']}/{p['n']} seeds, p = {p['p_value']:.3f}"
        lines.append(f"| {r['schedule']} | {cell(s[teacher])} | {cell(s[baseline])} | {cell(s[student])} | "
                     f"{100 * x / t:.1f}% | {x - b:+.1f} | {test} |")
    atomic_write_text(results / f"{name}.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    labels = [r["schedule"] for r in report["rows"]]
    for i, m in enumerate((teacher, baseline, student)):
        means = [statistics.fmean(r["scores"][m]) for r in report["rows"]]
        errs = [statistics.stdev(r["scores"][m]) if len(r["scores"][m]) > 1 else 0 for r in report["rows"]]
        ax.bar([j + (i - 1) * 0.27 for j in range(len(labels))], means, 0.27, yerr=errs, label=m, capsize=3)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set(ylabel=f"{info.title} dev (x100)", title=f"{info.title} by fine-tuning schedule")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(results / f"{name}.png")
    plt.close(fig)


#: Phase "curve": the shipped recipe's student distilled once for the longest budget, saved at these steps and
#: scored like the screen's candidates (issue 12, item 4: what does more distillation buy?). One run, so the
#: learning rate at step k follows the long run's schedule, not a k-step run's.
CURVE_STEPS = (150, 300, 600, 1200, 2400)
CURVE_CANDIDATE = "tinybert-top-probs"


class SaveAt(Callback):
    """Save the student (with the teacher's tokenizer) as ``out/step-N`` after each step N of ``steps``."""

    def __init__(self, steps: tuple[int, ...], out: Path) -> None:
        from transformers import AutoTokenizer

        self.steps, self.out = set(steps), out
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(PACKAGED_TEACHER))

    def on_step_end(self, distiller: Any, step: int, terms: dict[str, float] | None) -> None:
        target = self.out / f"step-{step}"
        if step in self.steps and not (target / "config.json").is_file():
            with atomic_dir(target) as tmp:
                distiller.student().save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)


def curve(args: argparse.Namespace) -> None:
    """Distil :data:`CURVE_CANDIDATE` for the largest of :data:`CURVE_STEPS` (resumable), score every saved step and
    the copied-layers start (step 0); writes ``results/curve.{json,md,png}``."""
    steps = tuple(sorted(args.curve_steps))
    out = args.out_dir / "curve"
    recipe = make_recipe(CURVE_CANDIDATE, argparse.Namespace(**{**vars(args), "steps": steps[-1], "out_dir": out}))
    recipe["train"].update(save_every=steps[0], eval_every=steps[0])
    recipe = recipe_from_dict(recipe).to_dict()
    start = time.perf_counter()
    summary = run_distillation(recipe, (SaveAt(steps, out),))
    cache = ResultCache()
    base = make_baseline("copy-1-3-6", args.out_dir)
    tokens = args.batch_size * 128
    rows = [{"step": 0, "tokens": 0, **score(base, "copy-1-3-6", cache, args.long_proxy)}]
    for step in steps:
        path = out / f"step-{step}"
        rows.append({"step": step, "tokens": step * tokens, **score(path, f"curve-{step}", cache, args.long_proxy)})
    valid = [json.loads(x) for x in (out / CURVE_CANDIDATE / "metrics.jsonl").read_text().splitlines()
             if '"valid"' in x]
    teacher = score(Path(resolve_model(PACKAGED_TEACHER)), "teacher", cache, args.long_proxy)
    report = {"command": shlex.join(["python", "benchmarks/quality/run.py", *sys.argv[1:]]), "machine": conditions(),
              "candidate": CURVE_CANDIDATE, "batch_size": args.batch_size, "seed": args.seed, "rows": rows,
              "teacher": teacher, "heldout": [{"step": v["step"], "loss": v["loss"]} for v in valid],
              "train_time_s": summary["train_time_s"], "wall_s": round(time.perf_counter() - start, 1)}
    write_curve(report, name="curve-long-proxy" if args.long_proxy else "curve")


def write_curve(report: dict[str, Any], results: Path = RESULTS, name: str = "curve") -> None:
    """``<name>.json``, ``.md`` (score per step) and ``.png`` (scores vs tokens, log scale) in ``results``; rows with
    ``proxy_stsb_long`` add the longer proxy's column and line."""
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / f"{name}.json", report)
    long = "proxy_stsb_long" in report["rows"][0]
    proxies = [("proxy_stsb", "proxy STS-B")] + ([("proxy_stsb_long", f"proxy STS-B, {LONG_PROXY_EPOCHS} epochs")]
                                                  if long else [])
    loss = {h["step"]: h["loss"] for h in report["heldout"]}
    t = report["teacher"]
    lines = ["# Quality vs distillation budget", "",
             f"`{report['candidate']}` (the shipped `recipes/tinybert-3l.yaml` student: teacher layers 1, 3, 6 copied, "
             f"then distilled along them) in one run of {report['rows'][-1]['step']} steps x {report['batch_size']} "
             f"blocks x 128 tokens, seed {report['seed']}, the student saved along the way; step 0 is the copied "
             "layers without distillation. Scores x100 as in the screen (zero-shot STS-B: Spearman on the 1,500 dev "
             "pairs; proxy STS-B: 2,000 training pairs, 2 epochs, one seed"
             + (f"; the same for {LONG_PROXY_EPOCHS} epochs" if long else "") + "). The learning rate follows the "
             f"long run's schedule. Teacher: zero-shot {t['zeroshot']:.1f}, "
             + ", ".join(f"{label} {t[key]:.1f}" for key, label in proxies) + ".", "",
             f"Command: `{report['command']}`; distillation {report['train_time_s'] / 60:.0f} min; machine: "
             f"{report['machine']['cpu']}, load average at start {report['machine']['load_average']}.", "",
             "| step | tokens | held-out loss | zero-shot STS-B | " + " | ".join(label for _, label in proxies) + " |",
             "|---:|---:|---:|---:|" + "---:|" * len(proxies)]
    for r in report["rows"]:
        held = f"{loss[r['step']]:.4f}" if r["step"] in loss else "-"
        lines.append(f"| {r['step']} | {r['tokens']:,} | {held} | {r['zeroshot']:.1f} | "
                     + " | ".join(f"{r[key]:.1f}" for key, _ in proxies) + " |")
    atomic_write_text(results / f"{name}.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    rows = [r for r in report["rows"] if r["tokens"]]
    for key, label in (("zeroshot", "zero-shot STS-B"), *proxies):
        line = ax.plot([r["tokens"] for r in rows], [r[key] for r in rows], "o-", label=label)[0]
        ax.axhline(report["rows"][0][key], color=line.get_color(), linestyle=":", label=f"{label}, no distillation")
        ax.axhline(t[key], color=line.get_color(), linestyle="--", alpha=0.5, label=f"{label}, teacher")
    ax.set_xscale("log")
    ax.set(xlabel="distillation tokens", ylabel="score (x100)", title="3-layer student: score vs distillation budget")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(results / f"{name}.png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", choices=["screen", "finetune", "curve", "schedule"], default="screen")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out-dir", type=Path, default=Path("runs/quality"))
    p.add_argument("--only", nargs="+", help="screen: distilled candidates to run (default all); finetune: the "
                                             "screened models to fine-tune, in order (baselines and `teacher` by name)")
    p.add_argument("--curve-steps", type=int, nargs="+", default=list(CURVE_STEPS),
                   help="curve: the steps at which the student is saved and scored (the largest is the run's length)")
    p.add_argument("--task", choices=SCHEDULE_TASKS, nargs="+", default=["stsb"],
                   help="schedule: the tasks fine-tuned")
    p.add_argument("--report-dir", type=Path, help="finetune: where the report of the models run goes (default "
                                                   "results/finetune; runs are cached in results/finetune/cache "
                                                   "either way)")
    p.add_argument("--lr-grid", type=float, nargs="+", metavar="LR",
                   help="finetune: try these fine-tuning learning rates for every model and task and report each "
                        "model's best by mean dev score (runs at 5e-5 are the default ones, reused from the cache)")
    p.add_argument("--long-proxy", action="store_true",
                   help=f"curve: also score the proxy at {LONG_PROXY_EPOCHS} epochs (writes results/curve-long-proxy.*)")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.phase == "curve":
        curve(args)
        return
    if args.phase == "schedule":
        schedule(args.only or list(SCHEDULE_MODELS), args)
        return
    if args.phase == "finetune":
        finetune(args.only or ["copy-1-3-6", "tinybert-top-probs", "teacher"], args)
        return
    cache = ResultCache()
    report: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/quality/run.py", *sys.argv[1:]]), "machine": conditions(),
        "budget": {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                   "tokens": args.steps * args.batch_size * 128}, "rows": []}
    if (RESULTS / "screen.json").is_file():  # keep rows of candidates not re-run this time
        previous = json.loads((RESULTS / "screen.json").read_text())
        if previous.get("budget") == report["budget"]:
            report["rows"] = previous["rows"]

    def put(row: dict[str, Any]) -> None:
        report["rows"] = [r for r in report["rows"] if r["name"] != row["name"]] + [row]
        order = {"teacher": 0, "baseline": 1, "distilled": 2}
        report["rows"].sort(key=lambda r: (order[r["kind"]], r["name"]))
        write_report(report)

    teacher_dir = Path(resolve_model(PACKAGED_TEACHER))
    put({"name": "teacher", "kind": "teacher", "layers": "1-6", **score(teacher_dir, "teacher", cache)})
    for name, student in BASELINES.items():
        put({"name": name, "kind": "baseline", "layers": student["init_args"]["layers"],
             **score(make_baseline(name, args.out_dir), name, cache)})
    for name in args.only or CANDIDATES:
        start = time.perf_counter()
        summary = run_distillation(make_recipe(name, args))
        out = Path(summary["recipe"]["output_dir"])
        valid = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"valid"' in x]
        put({"name": name, "kind": "distilled", "layers": summary["init"]["layers"], "mapping": summary["mapping"],
             "objective": summary["objective"], "loss_start": valid[0]["loss"], "loss_end": valid[-1]["loss"],
             "train_time_s": summary["train_time_s"], **score(out, name, cache)})
        row = next(r for r in report["rows"] if r["name"] == name)
        print(f"[quality] {name}: {row} ({time.perf_counter() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
