"""Join the processes of block-wise supernet training into one supernet run (``bertpress merge-blocks``).

NAS-BERT trains the blocks of its supernet independently, each on the teacher's previous-block output. A recipe
with ``supernet.blocks: N`` and ``supernet.block: b`` trains block ``b`` alone, so N processes (or machines) train
the N blocks at once, each with ``--set supernet.block=b`` and its own ``output_dir``. Each process changes only its
block's layers (the first block's process also the embeddings); everything else stays at the shared initial
supernet. :func:`merge_blocks` takes every block from its own process and writes a run directory that ``bertpress
search-arch`` reads like a single-process run (the recipe without ``block``, the supernet in ``student/``, the
importance ranking). It refuses runs of different recipes, missing or repeated blocks, unfinished runs, and runs
whose untrained parts disagree (they did not start from the same supernet).

With dropout the block processes draw other masks than a single process would (each runs only its own layers);
with ``train.max_grad_norm`` each clips its own block's gradient norm, a single process all blocks' together.
Without either, the merged supernet equals the single-process block-wise run's.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import bertpress
from bertpress.atomic import atomic_dir, atomic_write_json, atomic_write_text
from bertpress.errors import BertpressError
from bertpress.init.importance import SCORE_FILE
from bertpress.models.anatomy import anatomy
from bertpress.models.teacher import STUDENT_DIR
from bertpress.recipe import RESULT_NEUTRAL_FIELDS, Recipe, load_recipe
from bertpress.train.build import build_run
from bertpress.train.output import check_job_dir, flat_recipe, is_run_dir

SUMMARY = "bertpress.json"


def _block_runs(run_dirs: Sequence[Path]) -> dict[int, tuple[Path, Recipe]]:
    """The runs by block, checked: block runs of one recipe, finished, one per block."""
    runs: dict[int, tuple[Path, Recipe]] = {}
    for d in run_dirs:
        if not (d / "recipe.yaml").is_file():
            raise BertpressError(f"{d}: not a run directory (no recipe.yaml): give the output directories of the "
                                 "block runs")
        r = load_recipe(d / "recipe.yaml")
        if r.supernet is None or r.supernet.block is None:
            raise BertpressError(f"{d}: not a block run (its recipe has no supernet.block): give the runs of one "
                                 "block-wise recipe started with --set supernet.block=0, 1, ...")
        if not (d / SUMMARY).is_file() or not (d / STUDENT_DIR / "config.json").is_file():
            raise BertpressError(f"{d}: the run has not finished (no {SUMMARY}): resume it with --resume first")
        if r.supernet.block in runs:
            raise BertpressError(f"{d} and {runs[r.supernet.block][0]} both trained block {r.supernet.block}: give "
                                 "one run per block")
        runs[r.supernet.block] = (d, r)
    first_dir, first = next(iter(runs.values()))
    n = first.supernet.blocks
    missing = sorted(set(range(n)) - runs.keys())
    if missing:
        raise BertpressError(f"block runs missing: blocks {missing} of supernet.blocks {n} (0-based): give one run "
                             "per block")
    ignored = RESULT_NEUTRAL_FIELDS | {"supernet.block"}
    base = {k: v for k, v in flat_recipe(first.to_dict()).items() if k not in ignored}
    for d, r in runs.values():
        other = {k: v for k, v in flat_recipe(r.to_dict()).items() if k not in ignored}
        changed = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
        if changed:
            k = changed[0]
            raise BertpressError(f"{d} ran another recipe than {first_dir} ({k}: {other.get(k)!r} vs "
                                 f"{base.get(k)!r}): merge the block runs of one recipe")
    return dict(sorted(runs.items()))


def _owners(model: torch.nn.Module, blocks: int) -> dict[str, int]:
    """State-dict key -> the block whose process trains it (tied weights follow their parameter); keys of no block
    (pooler, MLM head transform) are absent."""
    parts = anatomy(model)
    size = parts.num_layers // blocks
    owner: dict[int, int] = {id(p): 0 for p in parts.embeddings.parameters()}
    for i, layer in enumerate(parts.layers):
        owner.update({id(p): i // size for p in layer.parameters()})
    return {k: owner[id(p)] for k, p in model.named_parameters(remove_duplicate=False) if id(p) in owner}


def merge_blocks(run_dirs: Sequence[str | Path], output_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write the supernet run made of the block runs ``run_dirs`` (one per block, any order) to ``output_dir``."""
    out = Path(output_dir)
    runs = _block_runs([Path(d) for d in run_dirs])
    check_job_dir(out, label="--output-dir", holds=is_run_dir, job="bertpress run", other="--output-dir",
                  resume=False, overwrite=overwrite)
    first_dir, first = runs[0]
    recipe = first.model_copy(update={"output_dir": str(out),
                                      "supernet": first.supernet.model_copy(update={"block": None})})
    run = build_run(recipe)
    model = run.student
    states = {b: type(model).from_pretrained(d / STUDENT_DIR).state_dict() for b, (d, _) in runs.items()}
    owners = _owners(model, len(runs))
    merged = {}
    for key, value in states[0].items():
        idle = [states[b][key] for b in runs if b != owners.get(key)]  # the initial supernet's value, in each
        if any(not torch.equal(idle[0], x) for x in idle[1:]):
            raise BertpressError(f"{key} differs between block runs that do not train it: they did not start from "
                                 "the same supernet (same recipe, teacher and init); rerun them from one recipe")
        merged[key] = states[owners[key]][key] if key in owners else value
    model.load_state_dict(merged)
    scores = [d / SCORE_FILE for d, _ in runs.values()]
    if any(p.is_file() for p in scores) and len({p.read_bytes() if p.is_file() else None for p in scores}) > 1:
        raise BertpressError(f"the block runs' importance rankings ({SCORE_FILE}) differ: they ranked different "
                             "teachers or corpora; rerun them from one recipe")
    summaries = {b: json.loads((d / SUMMARY).read_text()) for b, (d, _) in runs.items()}
    summary: dict[str, Any] = {
        "bertpress_version": bertpress.__version__, "recipe": recipe.to_dict(),
        "supernet": summaries[0].get("supernet"),
        "merged_blocks": [{"block": b, "run_dir": str(d.resolve()), "steps": summaries[b].get("steps"),
                           "tokens_seen": summaries[b].get("tokens_seen"), "final": summaries[b].get("final"),
                           "train_time_s": summaries[b].get("train_time_s")} for b, (d, _) in runs.items()]}
    with atomic_dir(out) as tmp:
        # the tokenizer (and sentence-transformers files) of the block-0 run; not its card, recipe or summary
        shutil.copytree(first_dir / STUDENT_DIR, tmp / STUDENT_DIR,
                        ignore=shutil.ignore_patterns("README.md", "recipe.yaml", SUMMARY))
        model.save_pretrained(tmp / STUDENT_DIR)
        for where in (tmp, tmp / STUDENT_DIR):
            atomic_write_text(where / "recipe.yaml", recipe.to_yaml())
            atomic_write_json(where / SUMMARY, summary)
        if scores[0].is_file():
            shutil.copy2(scores[0], tmp / SCORE_FILE)
    return out
