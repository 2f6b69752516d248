"""``bertpress merge-blocks RUN_DIR... --output-dir OUT``: one supernet run out of block-wise training's processes."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge-blocks", help="join the block runs of block-wise supernet training into one supernet run",
        description="Block-wise supernet training (supernet.blocks: N) can run each block in its own process: "
                    "start the recipe N times with --set supernet.block=0 .. N-1 and separate output_dir, then "
                    "merge the finished runs. The merged run directory is read by bertpress search-arch.")
    p.add_argument("run_dirs", nargs="+", help="the block runs' output directories, one per block (any order)")
    p.add_argument("--output-dir", required=True, help="where the merged supernet run goes")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --output-dir")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertpress.train.merge import merge_blocks

    out = merge_blocks(args.run_dirs, args.output_dir, overwrite=args.overwrite)
    print(f"merged {len(args.run_dirs)} block runs -> {out} (next: bertpress search-arch {out} --budget ...)")
    return 0
