"""``select``: copy the embeddings, a chosen list of teacher layers and the heads into a same-width student.

DistilBERT (Sanh et al., 2019) initialises its 6-layer student from every other layer of BERT-base; the default
here is the same rule for any depth: teacher layers ``round(i * L_t / L_s) + 1`` for ``i = 0 .. L_s-1``.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from bertpress.errors import BertpressError
from bertpress.init.base import INITIALISERS, InitContext

_LAYER_KEY = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")


class SelectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: list[int] | None = Field(
        None, description="1-based teacher layers copied into student layers 1..L_s; default every other layer")


def every_other_layer(teacher_layers: int, student_layers: int) -> list[int]:
    """DistilBERT's rule generalised: evenly spaced teacher layers starting at the first (1-based)."""
    return [round(i * teacher_layers / student_layers) + 1 for i in range(student_layers)]


def _check_width(ctx: InitContext) -> None:
    t, s = ctx.teacher.model.config, ctx.student.config
    for field in ("hidden_size", "num_attention_heads", "intermediate_size"):
        if getattr(t, field) != getattr(s, field):
            raise BertpressError(
                f"initialiser 'select' copies whole layers, so student {field} must equal the teacher's "
                f"({getattr(s, field)} != {getattr(t, field)}): use init 'etd-rand' or 'etd-impt' for narrower students"
            )


def _layers(ctx: InitContext, options: SelectOptions | None) -> list[int]:
    n_t, n_s = ctx.teacher.parts.num_layers, ctx.student.config.num_hidden_layers
    layers = (options.layers if options and options.layers is not None else None) or every_other_layer(n_t, n_s)
    if len(layers) != n_s or not all(1 <= x <= n_t for x in layers):
        raise BertpressError(
            f"init_args.layers {layers} must list {n_s} teacher layers between 1 and {n_t}: one per student layer"
        )
    return layers


def _preflight(ctx: InitContext, options: SelectOptions | None) -> None:
    _check_width(ctx)
    _layers(ctx, options)


@INITIALISERS.register("select", options=SelectOptions, preflight=_preflight)
def select_init(ctx: InitContext, options: SelectOptions | None) -> dict[str, Any]:
    """Copy embeddings, the chosen teacher layers (default every other) and the MLM head / pooler."""
    layers = _layers(ctx, options)
    teacher_sd = ctx.teacher.model.state_dict()
    copied = 0
    with torch.no_grad():
        for key, param in ctx.student.state_dict().items():
            src = key
            m = _LAYER_KEY.match(key)
            if m:
                src = f"{m.group(1)}{layers[int(m.group(2))] - 1}{m.group(3)}"
            if src in teacher_sd and teacher_sd[src].shape == param.shape:
                param.copy_(teacher_sd[src])
                copied += 1
    return {"layers": layers, "tensors_copied": copied}
