"""``bertpress push RUN_DIR REPO_ID``: upload the publishable part of a run to the Hugging Face hub."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a distilled student (weights, tokenizer, card; no checkpoints) to the hub",
                       description="Upload the student of a run directory (RUN_DIR/student: weights, config, "
                                   "tokenizer, sentence-transformers modules, the model card, recipe.yaml and "
                                   "bertpress.json) to a Hugging Face hub model repository; checkpoints/, "
                                   "tensorboard/ and metrics.jsonl are outside it and never uploaded.")
    p.add_argument("run_dir", type=Path, help="a finished bertpress distill output directory")
    p.add_argument("repo_id", help="hub repository, e.g. me/minilm-3l")
    p.add_argument("--evaluation", type=Path, metavar="EVAL_DIR",
                   help="a 'bertpress evaluate' output directory whose table goes into the model card")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--dry-run", action="store_true", help="write the card and list the files, upload nothing")
    p.set_defaults(func=run)


def evaluation_table(eval_dir: Path) -> str:
    """The comparison table (and its notes) of a ``bertpress evaluate`` output directory."""
    from bertpress.errors import BertpressError
    from bertpress.evaluate.report import markdown

    path = eval_dir / "results.json"
    if not path.is_file():
        raise BertpressError(f"{eval_dir} has no results.json: give the --output-dir of a 'bertpress evaluate' run")
    return markdown(json.loads(path.read_text())).split("\n\n| Task |")[0]


def run(args: argparse.Namespace) -> int:
    from bertpress.atomic import atomic_write_text
    from bertpress.errors import BertpressError
    from bertpress.models.teacher import resolve_model
    from bertpress.train.card import model_card, publishable_files

    model_dir = Path(resolve_model(str(args.run_dir)))
    summary_file = model_dir / "bertpress.json"
    if not summary_file.is_file() or not (model_dir / "config.json").is_file():
        raise BertpressError(f"{args.run_dir} holds no finished run (no student/ with bertpress.json and "
                             "config.json): give the output_dir of a completed 'bertpress distill'")
    summary = json.loads(summary_file.read_text())
    evaluation = evaluation_table(args.evaluation) if args.evaluation else None
    atomic_write_text(model_dir / "README.md", model_card(summary, evaluation, args.repo_id))
    files = publishable_files(model_dir)
    size = sum((model_dir / f).stat().st_size for f in files)
    print(f"{len(files)} files, {size / 2**20:.1f} MiB -> {args.repo_id}")
    for f in files:
        print(f"  {f}")
    if args.dry_run:
        return 0
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        api.upload_folder(folder_path=str(model_dir), repo_id=args.repo_id,
                          allow_patterns=[str(f) for f in files], commit_message="Upload student distilled with bertpress")
    except Exception as e:  # network, authentication, permissions: the hub's own message says which
        raise BertpressError(f"upload to {args.repo_id!r} failed ({type(e).__name__}: {str(e).splitlines()[0][:160]}):"
                             " check the network and your token (hf auth login)") from None
    print(f"uploaded: https://huggingface.co/{args.repo_id}")
    return 0
