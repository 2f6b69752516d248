"""``etd-rand`` and ``etd-impt``: start the student as a sub-network of the teacher (Extract Then Distill).

ETD (Chen et al., 2021, "Extract then Distill: Efficient and Effective Task-Agnostic BERT Distillation",
arXiv:2104.11928) keeps some teacher layers (depth) and, inside them, some heads, FFN neurons and hidden dims
(width), then distils as usual. ETD-Rand picks the width at random (seeded), ETD-Impt by importance measured on a
corpus sample (:mod:`bertpress.init.importance`); the copy itself is :func:`bertpress.init.extract.extract`.

Width rule for attention, with teacher head size ``d_t`` and student head size ``d_s = hidden_s / heads_s``: keep
``n = max(heads_s, ceil(hidden_s / d_t))`` teacher heads per layer and ``hidden_s`` of their dims split evenly among
them (the first heads in index order take the remainder). When ``d_s == d_t`` this keeps whole heads, when
``d_s < d_t`` ``d_s`` dims of each kept head, and when ``d_s > d_t`` each student head is several teacher heads'
dims concatenated (a valid start, not function-preserving). Kept indices are always sorted, so extracting the
teacher's own shape reproduces it exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor
from transformers import PretrainedConfig, PreTrainedModel

from bertpress.errors import BertpressError
from bertpress.init.base import INITIALISERS, InitContext
from bertpress.init.extract import ExtractionPlan, check_layout, extract
from bertpress.init.importance import Importance, load_or_compute
from bertpress.models.anatomy import Anatomy, layer_width_parts, layout_of
from bertpress.objectives.mapping import MAPPINGS

_LAYERS_HELP = ("teacher layers kept, student layer i <- teacher layer layers[i] (1-based list), or a layer "
                "mapping's name: skip (every other from the first, as DistilBERT), uniform, last, first")


def _layer_rule(v: list[int] | str, extra: tuple[str, ...] = ()) -> list[int] | str:
    if isinstance(v, str) and v not in MAPPINGS and v not in extra:
        raise ValueError(f"{v!r} is neither a list of teacher layers nor one of "
                         f"{', '.join([*MAPPINGS.names(), *extra])}")
    return v


class ETDRandOptions(BaseModel):
    """Options of ``etd-rand``."""

    model_config = ConfigDict(extra="forbid")
    layers: list[int] | str = Field("skip", description=_LAYERS_HELP)

    @field_validator("layers")
    @classmethod
    def _rule(cls, v: list[int] | str) -> list[int] | str:
        return _layer_rule(v)


class ETDImptOptions(BaseModel):
    """Options of ``etd-impt``."""

    model_config = ConfigDict(extra="forbid")
    layers: list[int] | str = Field(
        "skip", description=_LAYERS_HELP + ", or importance (the most important layers, in order)")

    @field_validator("layers")
    @classmethod
    def _rule(cls, v: list[int] | str) -> list[int] | str:
        return _layer_rule(v, ("importance",))

    importance_batches: int = Field(8, ge=1, description="corpus batches the importance scores are measured on")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="share of tokens corrupted for the importance loss")


_SIZES = (("num_layers", "num_hidden_layers"), ("hidden_size", "hidden_size"), ("num_heads", "num_attention_heads"))


def check_shape(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    """Refuse a student larger than the teacher in any dimension (nothing to extract it from), or of a layout ETD
    cannot slice."""
    check_layout(teacher, student)
    for name, field in (*_SIZES, ("intermediate_size", layout_of(teacher.config).ffn_size)):
        s, t = getattr(student.config, field), getattr(teacher.config, field)
        if s > t:
            raise BertpressError(
                f"student.{name} {s} is larger than the teacher's {t}, and ETD extracts a sub-network: set "
                f"student.{name} <= {t}, or use init 'random' for a student larger than its teacher"
            )


def choose_layers(option: list[int] | str, teacher_layers: int, student_layers: int,
                  scores: Importance | None = None) -> list[int]:
    """The 1-based teacher layers kept, in student order."""
    if isinstance(option, str) and option in MAPPINGS:
        return MAPPINGS.get(option).fn(student_layers, teacher_layers)
    if option == "importance":
        if scores is None:
            raise BertpressError("init_args.layers 'importance' needs importance scores: use init 'etd-impt'")
        return [i + 1 for i in _keep(teacher_layers, student_layers, scores.layers, None)]
    layers = list(option)
    if len(layers) != student_layers or not all(1 <= x <= teacher_layers for x in layers):
        raise BertpressError(
            f"init_args.layers {layers} must list {student_layers} teacher layers between 1 and {teacher_layers}: "
            "one per student layer"
        )
    return layers


def _keep(n: int, k: int, score: Tensor | None, generator: torch.Generator | None) -> list[int]:
    """``k`` of ``range(n)``, in index order: the ``k`` highest scores (ties to the lower index), or ``k`` at
    random."""
    if score is None:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.sort(score, descending=True, stable=True).indices
    return sorted(order[:k].tolist())


def build_plan(teacher: Anatomy, student: PretrainedConfig, layers: list[int], scores: Importance | None,
               generator: torch.Generator) -> ExtractionPlan:
    """Choose hidden dims, heads, per-head dims and neurons for ``layers`` (kept in the teacher's order): by
    ``scores``, or at random."""
    d_t, ffn_t = teacher.head_dim, layer_width_parts(teacher, 0).neurons
    hidden_s, heads_s = student.hidden_size, student.num_attention_heads
    n_heads = max(heads_s, math.ceil(hidden_s / d_t))
    dims_per_head = [hidden_s // n_heads + (j < hidden_s % n_heads) for j in range(n_heads)]
    hidden = _keep(teacher.hidden_size, hidden_s, scores.hidden if scores else None, generator)
    heads, head_dims, neurons = [], [], []
    for t_layer in layers:
        i = t_layer - 1
        kept = _keep(teacher.num_heads, n_heads, scores.heads[i] if scores else None, generator)
        heads.append(kept)
        head_dims.append([_keep(d_t, count, scores.head_dims[i, h * d_t:(h + 1) * d_t] if scores else None, generator)
                          for h, count in zip(kept, dims_per_head, strict=True)])
        neurons.append(_keep(ffn_t, getattr(student, teacher.layout.ffn_size), scores.neurons[i] if scores else None,
                             generator))
    return ExtractionPlan(layers, hidden, heads, head_dims, neurons)


def _extract(ctx: InitContext, layers: list[int], scores: Importance | None) -> dict[str, Any]:
    parts = ctx.teacher.parts
    plan = build_plan(parts, ctx.student.config, layers, scores, torch.Generator().manual_seed(ctx.seed))
    written = extract(ctx.teacher.model, ctx.student, plan)
    d_s = ctx.student.config.hidden_size // ctx.student.config.num_attention_heads
    return {"selection": "importance" if scores is not None else "random", **plan.to_dict(),
            "teacher_head_dim": parts.head_dim, "student_head_dim": d_s, "tensors_copied": written}


def _preflight(ctx: InitContext, options: ETDRandOptions | ETDImptOptions | None) -> None:
    """Shape and explicit-layer checks, before any output is written."""
    check_shape(ctx.teacher.model, ctx.student)
    if options is not None and isinstance(options.layers, list):
        choose_layers(options.layers, ctx.teacher.parts.num_layers, ctx.student.config.num_hidden_layers)


@INITIALISERS.register("etd-rand", options=ETDRandOptions, preflight=_preflight)
def etd_rand(ctx: InitContext, options: ETDRandOptions | None) -> dict[str, Any]:
    """ETD-Rand: extract a seeded random sub-network (heads, neurons, hidden dims) of the chosen teacher layers."""
    options = options or ETDRandOptions()
    layers = choose_layers(options.layers, ctx.teacher.parts.num_layers, ctx.student.config.num_hidden_layers)
    return _extract(ctx, layers, None)


@INITIALISERS.register("etd-impt", options=ETDImptOptions, preflight=_preflight)
def etd_impt(ctx: InitContext, options: ETDImptOptions | None) -> dict[str, Any]:
    """ETD-Impt: extract the most important heads, neurons and hidden dims, scored on a corpus sample (cached)."""
    options = options or ETDImptOptions()
    if ctx.sample_batches is None:
        raise BertpressError("init 'etd-impt' needs corpus batches to score importance: "
                             "run it from a recipe with data, or use init 'etd-rand'")
    batches = list(ctx.sample_batches(options.importance_batches))
    scores, info = load_or_compute(ctx.teacher, batches, seed=ctx.seed, mlm_probability=options.mlm_probability,
                                   cache_dir=ctx.cache_dir)
    layers = choose_layers(options.layers, ctx.teacher.parts.num_layers, ctx.student.config.num_hidden_layers,
                           scores)
    return {**_extract(ctx, layers, scores), "importance": info}
