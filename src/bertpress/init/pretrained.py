"""``pretrained``: start the student from an existing model of its shape, to go on distilling it (a sub-network
extracted from a supernet, a previous run's student).

``init_args: {path: DIR}``: a ``save_pretrained`` directory or a bertpress run directory (its ``student/``). Every
tensor the source has is copied; what it lacks (an MLM head the source was saved without) keeps the student's own
initialisation and is listed in the plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from bertpress.errors import BertpressError
from bertpress.init.base import INITIALISERS, InitContext
from bertpress.models.teacher import STUDENT_DIR


class PretrainedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="model directory (save_pretrained) or bertpress run directory of the student's shape")


def _source(ctx: InitContext, options: PretrainedOptions | None) -> Path:
    from transformers import AutoConfig

    if options is None:
        raise BertpressError("initialiser 'pretrained' needs init_args.path: the model directory to start from")
    path = Path(options.path)
    if (path / STUDENT_DIR / "config.json").is_file():
        path = path / STUDENT_DIR
    if not (path / "config.json").is_file():
        raise BertpressError(f"init_args.path {options.path!r}: no model there (no config.json): give a "
                             "save_pretrained directory or a bertpress run directory")
    config, student = AutoConfig.from_pretrained(path), ctx.student.config
    ffn = ctx.teacher.parts.layout.ffn_size
    for field in ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", ffn):
        if getattr(config, field, None) != getattr(student, field, None):
            raise BertpressError(f"init_args.path {options.path!r}: its {field} is {getattr(config, field, None)!r}, "
                                 f"the student's {getattr(student, field, None)!r}: set the student's shape to the "
                                 "model's (student.num_layers, hidden_size, num_heads, intermediate_size)")
    return path


def _preflight(ctx: InitContext, options: PretrainedOptions | None) -> None:
    _source(ctx, options)


@INITIALISERS.register("pretrained", options=PretrainedOptions, preflight=_preflight)
def pretrained_init(ctx: InitContext, options: PretrainedOptions | None) -> dict[str, Any]:
    """Copy every tensor of the model at ``path`` into the student (same names after the HF prefix handling)."""
    path = _source(ctx, options)
    with torch.random.fork_rng(devices=[]):  # the source's missing parts are initialised randomly: not our RNG
        source, info = type(ctx.student).from_pretrained(path, output_loading_info=True)
    missing = set(info["missing_keys"])
    copied = 0
    with torch.no_grad():
        own = ctx.student.state_dict()
        for key, value in source.state_dict().items():
            if key in own and key not in missing:
                own[key].copy_(value)
                copied += 1
    return {"path": str(path), "tensors_copied": copied, "not_in_source": sorted(missing)}
