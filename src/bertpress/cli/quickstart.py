"""``bertpress quickstart``: the packaged teacher → a 3-layer student on this CPU, offline, in a few minutes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="distil the packaged teacher into a 3-layer student and summarise",
                       description="Distil the packaged all-MiniLM-L6-v2 teacher into a 3-layer student on a small "
                                   "corpus (Python's own docstrings unless --corpus is given), then print a summary "
                                   "table: size, latency, loss, teacher-student agreement and zero-shot STS-B.")
    p.add_argument("--corpus", nargs="+", help="text/JSONL files, globs or directories to distil on")
    p.add_argument("--output-dir", type=Path, help="run directory (default runs/quickstart-<time>)")
    p.add_argument("--steps", type=int, default=120, help="optimizer steps (default 120: ~3 min on 2 CPU cores)")
    p.add_argument("--batch-size", type=int, default=16, help="blocks of 128 tokens per step (default 16)")
    p.add_argument("--sts-pairs", type=int, default=1500,
                   help="STS-B dev pairs for the zero-shot similarity row, when $BERTPRESS_DATA (or ../shared/data) "
                        "has STS-B (default 1500, the whole dev set; 0 skips it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from bertpress.quickstart import run_quickstart, summary_rows

    out = args.output_dir or Path("runs") / time.strftime("quickstart-%Y%m%d-%H%M%S")
    summary = run_quickstart(out, corpus=args.corpus, steps=args.steps, batch_size=args.batch_size,
                             sts_pairs=args.sts_pairs)
    table = Table(title=f"bertpress quickstart: all-MiniLM-L6-v2 → 3-layer student ({summary['wall_time_s']:.0f} s)")
    for col in ("", "teacher", "student", ""):
        table.add_column(col)
    for row in summary_rows(summary):
        table.add_row(*row)
    console = Console()
    console.width = max(console.width, 110)
    console.print(table)
    print(f"student: {summary['student_dir']}\nsummary: {out / 'summary.md'}")
    return 0
