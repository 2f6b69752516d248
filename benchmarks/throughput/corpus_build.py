"""Corpus-building benchmark (issue 14, item 4): peak memory and speed of tokenising and packing a corpus into the
block cache, for the Wikipedia shards and for a synthetic text file far larger than they are.

Each build runs in its own process with a fresh cache directory (so nothing is reused), under the checkout given by
``--src`` (default this one; point it at another worktree's ``src`` to compare code versions), and reports wall
time, tokens per second and the child's peak resident memory (``ru_maxrss``). The synthetic file (``--synthetic-mb``,
default 0: skipped) repeats the Wikipedia text with a counter per line, is written under ``--work`` and deleted after.

    python benchmarks/throughput/corpus_build.py [--synthetic-mb 5000] [--label streaming] [--src PATH/src]

Appends one row per build to ``results/corpus_build.json`` and rewrites ``results/corpus_build.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
SHARDS = "corpus/enwiki-wikiextractor-2015/AA/wiki_*.gz"

CHILD = """
import json, sys, time
from bertpress.data.corpus import load_corpus
from bertpress.models.teacher import PACKAGED_TEACHER, resolve_model
from bertpress.recipe import DataSpec
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(resolve_model(PACKAGED_TEACHER))
spec = DataSpec(sources=[sys.argv[1]], block_size=128, cache_dir=sys.argv[2])
t0 = time.perf_counter()
corpus = load_corpus(spec, tok)
print(json.dumps({"seconds": time.perf_counter() - t0, "blocks": corpus.meta["blocks"],
                  "tokens": corpus.meta["tokens"], "lines": corpus.meta["lines"]}))
"""


def synthetic(path: Path, megabytes: int, source_glob: str) -> int:
    """Write about ``megabytes`` MB of text by cycling the shards' lines (each prefixed with a counter, so the
    tokenizer sees new strings); returns the bytes written."""
    lines: list[str] = []
    for shard in sorted(Path(source_glob).parent.glob(Path(source_glob).name)):
        with gzip.open(shard, "rt", encoding="utf-8", errors="replace") as f:
            lines += [line for line in f if line.strip() and not line.startswith("<")]
    written, i = 0, 0
    with path.open("w", encoding="utf-8") as out:
        while written < megabytes * 1_000_000:
            text = f"{i} {lines[i % len(lines)]}"
            out.write(text)
            written += len(text.encode())
            i += 1
    return written


def build(source: str, src: Path, parallelism: str | None = None) -> dict:
    """One cache build in a fresh process and cache directory; ``parallelism``: ``TOKENIZERS_PARALLELISM`` for it
    (None: unset, the library decides)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"} | {"PYTHONPATH": str(src)}
        if parallelism is not None:
            env["TOKENIZERS_PARALLELISM"] = parallelism
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = subprocess.run([sys.executable, "-c", CHILD, source, cache], env=env, capture_output=True, text=True,
                             check=False)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    row = json.loads(out.stdout.strip().splitlines()[-1])
    # ru_maxrss of children is the largest child so far: valid for this one when it exceeds the earlier ones
    row["peak_rss_mb"] = round(peak_kb / 1024, 1) if peak_kb > before else None
    row["tokens_per_s"] = round(row["tokens"] / row["seconds"])
    return row


def markdown(rows: list[dict]) -> str:
    out = ["# Corpus cache builds", "", "Tokenise + pack + write the block cache (block 128, packaged teacher's "
           "tokenizer), one fresh process and cache per row. Command: `python benchmarks/throughput/corpus_build.py`.",
           "", "| code | corpus | text MB | tokens | wall s | tokens/s | peak RSS MB | load avg | when |",
           "|:--|:--|--:|--:|--:|--:|--:|--:|:--|"]
    for r in rows:
        out.append(f"| {r['label']} | {r['corpus']} | {r['text_mb']:,.0f} | {r['tokens']:,} | {r['seconds']:.0f} | "
                   f"{r['tokens_per_s']:,} | {r['peak_rss_mb'] if r['peak_rss_mb'] is not None else '?'} | "
                   f"{r['load_average']} | {r['when']} |")
    return "\n".join(out) + "\n"


def main() -> None:
    from bertpress.atomic import atomic_write_json, atomic_write_text
    from bertpress.data.tasks.files import default_data_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="current", help="name of the code version in the table")
    p.add_argument("--src", type=Path, default=ROOT / "src", help="the bertpress sources to build with")
    p.add_argument("--synthetic-mb", type=int, default=0, help="also build a synthetic text file of this size")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "corpus-build")
    p.add_argument("--tokenizers-parallelism", choices=["true", "false"],
                   help="set TOKENIZERS_PARALLELISM for the builds (default: unset, bertpress's choice)")
    args = p.parse_args()
    shards = str(default_data_dir() / SHARDS)
    text = sum(len(gzip.decompress(f.read_bytes())) for f in Path(shards).parent.glob("wiki_*.gz"))  # uncompressed
    corpora = [("wikipedia shards", shards, text)]
    if args.synthetic_mb:
        args.work.mkdir(parents=True, exist_ok=True)
        path = args.work / "synthetic.txt"
        corpora.append((f"synthetic {args.synthetic_mb:,} MB", str(path), synthetic(path, args.synthetic_mb, shards)))
    path = RESULTS / "corpus_build.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    for name, source, size in corpora:
        print(f"[corpus] {args.label}: {name}", flush=True)
        row = {"label": args.label, "corpus": name, "text_mb": size / 1e6, **build(source, args.src, args.tokenizers_parallelism),
               "load_average": round(os.getloadavg()[0], 2), "when": time.strftime("%Y-%m-%d %H:%M")}
        rows.append(row)
        atomic_write_json(path, rows)
        atomic_write_text(RESULTS / "corpus_build.md", markdown(rows))
        print(json.dumps(row), flush=True)
    if args.synthetic_mb:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
