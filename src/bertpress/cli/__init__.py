"""The ``bertpress`` command: one thin module per verb, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bertpress import __version__, progress
from bertpress.errors import BertpressError

#: Verb modules under ``bertpress.cli``; each defines ``register(subparsers)`` and sets ``func`` on its parser.
VERBS = ("distill", "evaluate", "quickstart", "recipe", "search_mapping", "search_arch", "merge_blocks", "push", "export", "cvt")


def _common(default: object) -> argparse.ArgumentParser:
    """``-v``, ``-q`` and ``--no-progress``, accepted before and after the verb (after it, an absent flag leaves the
    value given before it alone)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=default, help="debug logging")
    common.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")
    common.add_argument("--no-progress", action="store_true", default=default, help="no progress bars")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertpress", description="Compress BERT-family encoders by task-agnostic knowledge distillation.",
        parents=[_common(False)])
    parser.add_argument("--version", action="version", version=f"bertpress {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    after_verb = _common(argparse.SUPPRESS)
    add_parser = sub.add_parser

    def add_verb(name: str, **kwargs):  # every verb (and its sub-verbs) takes the common flags too
        parser = add_parser(name, parents=[*kwargs.pop("parents", []), after_verb], **kwargs)
        if hasattr(parser, "add_subparsers"):
            original = parser.add_subparsers

            def add_subparsers(**kw):
                verbs = original(**kw)
                inner = verbs.add_parser
                verbs.add_parser = lambda n, **k: inner(n, parents=[*k.pop("parents", []), after_verb], **k)
                return verbs

            parser.add_subparsers = add_subparsers
        return parser

    sub.add_parser = add_verb
    for verb in VERBS:
        importlib.import_module(f"bertpress.cli.{verb}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run the verb, turn a :class:`BertpressError` into one line and a non-zero exit."""
    args = build_parser().parse_args(argv)
    if args.verbose and args.quiet:
        print("bertpress: error: -v and -q contradict each other: pass only one", file=sys.stderr)
        return 2
    if args.no_progress:
        os.environ[progress.ENV] = "1"  # every bar: distillation, corpus, fine-tuning, search workers
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level,
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
