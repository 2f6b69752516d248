"""``bertpress export RUN_DIR``: ONNX, ONNX optimised and int8, checked against eager PyTorch, with latency."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a student to ONNX (optimised, and int8) with parity and latency",
                       description="Export the encoder of a run (or any saved model directory) to ONNX, ONNX with "
                                   "ONNX Runtime's graph optimisations, and dynamic int8; check each against eager "
                                   "PyTorch and time it at batch 1 and 32. Needs pip install 'bertpress[export]'.")
    p.add_argument("model_dir", type=Path, help="run directory or saved model directory")
    p.add_argument("--output-dir", type=Path, help="where the ONNX files go (default MODEL_DIR/onnx)")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length of the parity and latency inputs")
    p.add_argument("--rounds", type=int, default=20, help="timed rounds per format and batch size")
    p.add_argument("--no-latency", action="store_true", help="parity only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bertpress.export import FORMATS, export_model

    out = args.output_dir or args.model_dir / "onnx"
    r = export_model(args.model_dir, out, seq_len=args.seq_len, rounds=args.rounds, latency=not args.no_latency)
    lat = r.get("latency_ms")
    print("| format | file MB | max abs diff (b1 / b32) | min cosine, mean-pooled | ms b1 | ms b32 |")
    print("|---|---:|---:|---:|---:|---:|")
    if lat:
        print(f"| eager PyTorch | | | | {lat['eager']['b1']:.1f} | {lat['eager']['b32']:.1f} |")
    for f in FORMATS:
        p = r["parity"][f]
        times = f"{lat[f]['b1']:.1f} | {lat[f]['b32']:.1f}" if lat else "- | -"
        print(f"| {f} | {r['files'][f]['mb']:.1f} | {p['max_abs_diff_b1']:.1e} / {p['max_abs_diff_b32']:.1e} | "
              f"{min(p['min_cosine_b1'], p['min_cosine_b32']):.4f} | {times} |")
    print(f"written to {out} (export.json has the details; {r.get('threads', '?')} torch threads)")
    return 0
