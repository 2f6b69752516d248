"""``bertpress search-arch RUN_DIR --budget ...``: students for given budgets out of a distilled supernet."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search-arch", help="pick and extract the best sub-network of a supernet run for each budget",
        description="Score every sub-network shape of a supernet run (recipe supernet: section) by held-out "
                    "distillation loss through the supernet, then extract, for each budget, the best shape within "
                    "it as a plain model directory (loads with AutoModel). Writes archs.json and archs.md.")
    p.add_argument("run_dir", help="the supernet run's output directory")
    p.add_argument("--budget", action="append", default=[], metavar="LIMITS",
                   help="params=N and/or latency_ms=N, comma-separated (repeatable: one student per budget)")
    p.add_argument("--output-dir", help="where the students and the report go (default RUN_DIR/students)")
    p.add_argument("--batches", type=int, default=4, help="held-out batches each shape is scored on")
    p.add_argument("--strategy", choices=("exhaustive", "ga"), default="exhaustive",
                   help="score every shape (exact), or run a genetic search per budget (spaces too large to score)")
    p.add_argument("--evaluations", type=int, default=200, help="ga: shapes scored per budget at most")
    p.add_argument("--seed", type=int, default=0, help="ga: seed of the search")
    p.add_argument("--latency", action="store_true",
                   help="measure a latency table of every shape on this machine and predict each shape's latency")
    p.add_argument("--latency-batch", type=int, default=1, help="batch size of the latency measurements")
    p.add_argument("--latency-seq", type=int, default=128, help="sequence length of the latency measurements")
    p.add_argument("--threads", type=int, help="torch threads of the latency measurements (default: torch's)")
    p.add_argument("--proxy-tasks", help="re-rank each budget's best shapes by the evaluation proxy on these tasks "
                                         "(comma-separated, e.g. stsb-zeroshot or sst2,mrpc,stsb; fine-tunes "
                                         "each candidate)")
    p.add_argument("--proxy-top", type=int, default=3, help="shapes per budget re-ranked by the proxy")
    p.add_argument("--data-dir", help="the proxy tasks' data (default $BERTPRESS_DATA)")
    p.add_argument("--further-steps", type=int, default=0,
                   help="distil each picked student this many steps more on its own (the run's recipe)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bertpress.search.arch import Budget, search_arch

    budgets = [Budget.parse(b) for b in args.budget]
    latency = ({"batch": args.latency_batch, "seq": args.latency_seq, "threads": args.threads}
               if args.latency else None)
    out = Path(args.output_dir) if args.output_dir else Path(args.run_dir) / "students"
    proxy = ({"tasks": args.proxy_tasks.split(","), "top": args.proxy_top, "data_dir": args.data_dir}
             if args.proxy_tasks else None)
    report = search_arch(args.run_dir, budgets, out, batches=args.batches, latency=latency, strategy=args.strategy,
                         evaluations=args.evaluations, seed=args.seed, proxy=proxy, further_steps=args.further_steps)
    for pick in report["picks"]:
        if pick.get("arch") is None:
            print(f"{pick['budget']}: no sub-network of the space fits")
        else:
            lat = f", {pick['latency_ms']:.2f} ms" if "latency_ms" in pick else ""
            print(f"{pick['budget']}: {pick['arch']} ({pick['params'] / 1e6:.2f}M parameters{lat}, held-out loss "
                  f"{pick['heldout_loss']:.4f}"
                  + (f", proxy {pick['proxy']:.2f}" if "proxy" in pick else "") + f") -> {pick['dir']}"
                  + (f"; further distilled -> {pick['further']['dir']}" if "further" in pick else ""))
    print(f"report: {out / 'archs.md'}")
    return 0
