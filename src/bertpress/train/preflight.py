"""Checks that fail in seconds, before any compute is spent, each with one line naming the fix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from bertpress.errors import BertpressError
from bertpress.models.anatomy import layout_of
from bertpress.train.output import existing_ancestor


def check_setup(recipe, teacher_config, tokenizer, objective) -> None:
    """Recipe-vs-model checks that need no corpus: sequence length, masking token, precision."""
    max_pos = getattr(teacher_config, "max_position_embeddings", None)
    offset = layout_of(teacher_config).positions_offset
    if max_pos and recipe.data.block_size > max_pos - offset:
        raise BertpressError(
            f"data.block_size {recipe.data.block_size} exceeds the teacher's {max_pos - offset} positions: "
            f"set data.block_size <= {max_pos - offset}")
    if objective.needs_masking and tokenizer.mask_token_id is None:
        raise BertpressError("the objective uses an MLM loss but the tokenizer has no mask token: "
                             "use a tokenizer with [MASK] or set the MLM weights to 0")
    if recipe.train.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise BertpressError("train.mixed_precision fp16 needs a CUDA GPU: use 'bf16' or 'no' on CPU")


def checkpoint_bytes(num_params: int) -> int:
    """Weights plus AdamW's two moments, in fp32."""
    return num_params * 4 * 3


def check_corpus_and_disk(recipe, corpus, out_dir: Path, num_processes: int, student_params: int) -> None:
    """Enough training blocks for one batch; output directory writable with room for a checkpoint."""
    need = recipe.train.batch_size * num_processes
    if len(corpus.train_index) < need:
        raise BertpressError(
            f"the corpus has {len(corpus.train_index)} training blocks, fewer than one global batch ({need}): "
            "lower train.batch_size or data.block_size, or add text")
    where = existing_ancestor(out_dir)
    if not os.access(where, os.W_OK):
        raise BertpressError(f"output_dir {str(out_dir)!r} is not writable: choose a directory you can write to")
    free = shutil.disk_usage(where).free
    need_bytes = 2 * checkpoint_bytes(student_params) if recipe.train.save_every else checkpoint_bytes(student_params) // 3
    if free < need_bytes:
        raise BertpressError(
            f"only {free / 2**20:.0f} MiB free under {str(out_dir)!r}, a checkpoint needs about "
            f"{need_bytes / 2**20:.0f} MiB: free disk space or choose another output_dir")
