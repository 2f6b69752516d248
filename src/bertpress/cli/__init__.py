"""The ``bertpress`` command: one thin module per verb, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bertpress import __version__
from bertpress.errors import BertpressError

#: Verb modules under ``bertpress.cli``; each defines ``register(subparsers)`` and sets ``func`` on its parser.
VERBS = ("distill", "evaluate", "quickstart", "recipe", "search_mapping")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertpress", description="Compress BERT-family encoders by task-agnostic knowledge distillation.")
    parser.add_argument("--version", action="version", version=f"bertpress {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    for verb in VERBS:
        importlib.import_module(f"bertpress.cli.{verb}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the verb, turn a :class:`BertpressError` into one line and a non-zero exit."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "torch.distributed", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)  # "removed shared tensor" on tied weights
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars on every model load
    try:
        return int(args.func(args) or 0)
    except BertpressError as e:
        print(f"bertpress: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("bertpress: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
