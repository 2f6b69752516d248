"""``bertpress evaluate``: fine-tune models on GLUE / SQuAD / CoNLL-2003 and compare them with their teacher."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="fine-tune encoders on downstream tasks and compare students with their teacher",
        description="Fine-tune each MODEL (a Hugging Face encoder directory) on downstream tasks with the same "
                    "settings and report dev scores, parameters, size and CPU latency. With --teacher, students are "
                    "reported against it (retention, speed-up). Results are cached: a re-run computes only what "
                    "is new. Runs on the GPU when there is one ($BERTPRESS_DEVICE=cpu forces the CPU); under "
                    "'accelerate launch' / torchrun each global batch is split across the processes.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="model directory, or LABEL=DIR to name it in the report")
    p.add_argument("--teacher", metavar="MODEL",
                   help="teacher to compare against (a directory, LABEL=DIR or packaged:all-MiniLM-L6-v2)")
    p.add_argument("--tasks", help="comma-separated tasks: cola sst2 mrpc qqp stsb mnli qnli rte wnli (or glue), "
                                   "squad, squad2, conll2003, stsb-zeroshot (embedding similarity without "
                                   "fine-tuning; seconds) (default rte,mrpc,stsb,cola,sst2; with --proxy "
                                   "sst2,stsb,conll2003)")
    p.add_argument("--data-dir", help="folder with glue/, squad/, conll2003/ (default $BERTPRESS_DATA or "
                                      "../shared/data beside the repository)")
    p.add_argument("--output-dir", default="runs/evaluate", help="where results.{json,md,png} go (default %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[TASK.]KEY=VALUE",
                   help="override a fine-tuning setting for all tasks or one, e.g. --set lr=3e-5 --set rte.epochs=10 "
                        "(repeatable; see --show-settings)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds for every task (default: 3 on small tasks, else 1)")
    p.add_argument("--lr-grid", type=float, nargs="+", metavar="LR",
                   help="try these learning rates on every task and report the best by mean dev score")
    p.add_argument("--max-train-examples", type=int, metavar="N", help="train every task on a fixed subset of N")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                   help="autocast for fine-tuning and prediction (bf16: GPU or a CPU with bf16 support; fp16: GPU, "
                        "loss-scaled); results are cached apart from fp32 ones")
    p.add_argument("--glue-source", choices=["auto", "tsv", "hub"], default="auto",
                   help="GLUE from the TSV layout, the hub, or TSVs when present else the hub (default)")
    p.add_argument("--cache-dir", help="result cache (default $BERTPRESS_CACHE/evaluate or ~/.cache/bertpress/evaluate)")
    p.add_argument("--recompute", action="store_true", help="ignore cached results (and replace them)")
    p.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")
    p.add_argument("--proxy", action="store_true",
                   help="print each MODEL's proxy fitness (fast fixed fine-tuning on a few tasks) and exit")
    p.add_argument("--show-settings", action="store_true", help="print the resolved settings per task and exit")
    p.set_defaults(func=run)


def shortcut_overrides(args: argparse.Namespace) -> list[str]:
    """Shortcut flags as ``--set`` overrides (``--set`` is applied after them, so it wins)."""
    out = []
    if args.seeds:
        out.append(f"seeds={json.dumps(args.seeds)}")
    if args.lr_grid:
        out.append(f"lr_grid={json.dumps(args.lr_grid)}")
    if args.max_train_examples is not None:
        out.append(f"max_train_examples={args.max_train_examples}")
    if args.mixed_precision:
        out.append(f"mixed_precision={args.mixed_precision}")
    return out + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bertpress.errors import BertpressError
    from bertpress.evaluate.cache import ResultCache
    from bertpress.evaluate.compare import DEFAULT_TASKS, evaluate_models
    from bertpress.evaluate.proxy import PROXY_TASKS, proxy_scores
    from bertpress.evaluate.report import markdown
    from bertpress.evaluate.settings import resolve_settings
    from bertpress.evaluate.suite import model_spec
    from bertpress.evaluate.tasks import parse_tasks

    overrides = shortcut_overrides(args)
    cache = ResultCache(Path(args.cache_dir) if args.cache_dir else None, read=not args.recompute)
    models = [model_spec(m) for m in args.models]
    default_tasks = ",".join(PROXY_TASKS if args.proxy else DEFAULT_TASKS)
    tasks = parse_tasks([t for t in (args.tasks or default_tasks).split(",") if t.strip()])
    if args.proxy:
        if not models:
            raise BertpressError("--proxy needs at least one model directory: bertpress evaluate --proxy DIR")
        for spec in models:
            start = time.perf_counter()
            scores = proxy_scores(spec.path, args.data_dir, tasks=tasks, overrides=overrides, cache=cache,
                                  progress=not args.no_progress)
            parts = ", ".join(f"{t} {scores[t]:.2f}" for t in tasks)
            noise = f" ± {scores['fitness_std']:.4f} over seeds" if "fitness_std" in scores else ""
            print(f"{spec.label}: proxy fitness {scores['fitness']:.4f}{noise} ({parts}; "
                  f"{time.perf_counter() - start:.0f}s)")
        return 0
    settings = resolve_settings(tasks, overrides)
    if args.show_settings:
        for name, s in settings.items():
            print(f"{name}: {json.dumps(s.model_dump())}")
        return 0
    report = evaluate_models(args.models, tasks, teacher=args.teacher, data_dir=args.data_dir, overrides=overrides,
                             glue_source=args.glue_source, latency=not args.no_latency, cache_dir=args.cache_dir,
                             recompute=args.recompute, output_dir=Path(args.output_dir),
                             command=shlex.join(["bertpress", *sys.argv[1:]]), progress=not args.no_progress)
    if "written" not in report:  # not the main process of an ``accelerate launch``
        return 0
    written = report["written"]
    print(markdown(report).split("\n\n")[0])
    print(f"\nwritten: {', '.join(map(str, written))} ({report['wall_seconds'] / 60:.1f} min)")
    return 0

