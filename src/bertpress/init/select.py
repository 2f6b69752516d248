"""``select``: copy the embeddings, a chosen list of teacher layers and the heads into a same-width student.

DistilBERT (Sanh et al., 2019) initialises its 6-layer student from every other layer of BERT-base; the default
here is the same rule for any depth: teacher layers ``round(i * L_t / L_s) + 1`` for ``i = 0 .. L_s-1``.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from bertpress.errors import BertpressError
from bertpress.init.base import INITIALISERS, InitContext
from bertpress.models.anatomy import anatomy
from bertpress.objectives.mapping import skip


class SelectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layers: list[int] | None = Field(
        None, description="1-based teacher layers copied into student layers 1..L_s; default every other layer (mapping skip)")


def _check_width(ctx: InitContext) -> None:
    t, s = ctx.teacher.model.config, ctx.student.config
    if t.model_type != s.model_type:
        raise BertpressError(f"initialiser 'select' copies teacher layers into a student of the teacher's type, but "
                             f"the student is {s.model_type!r} and the teacher {t.model_type!r}: use init "
                             "'teacher-embeddings' or 'random'")
    for field in ("hidden_size", "num_attention_heads", ctx.teacher.parts.layout.ffn_size):
        if getattr(t, field) != getattr(s, field):
            raise BertpressError(
                f"initialiser 'select' copies whole layers, so student {field} must equal the teacher's "
                f"({getattr(s, field)} != {getattr(t, field)}): use init 'etd-rand' or 'etd-impt' for narrower students"
            )


def _layers(ctx: InitContext, options: SelectOptions | None) -> list[int]:
    n_t, n_s = ctx.teacher.parts.num_layers, ctx.student.config.num_hidden_layers
    layers = (options.layers if options and options.layers is not None else None) or skip(n_s, n_t)
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
    prefix = anatomy(ctx.student).layers_prefix  # e.g. "bert.encoder.layer.", "model.layers."
    copied = 0
    with torch.no_grad():
        for key, param in ctx.student.state_dict().items():
            src = key
            if key.startswith(prefix):
                index, rest = key[len(prefix):].split(".", 1)
                src = f"{prefix}{layers[int(index)] - 1}.{rest}"
            if src in teacher_sd and teacher_sd[src].shape == param.shape:
                param.copy_(teacher_sd[src])
                copied += 1
    return {"layers": layers, "tensors_copied": copied}
