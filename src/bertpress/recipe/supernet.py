"""The ``supernet:`` section: distil one supernet whose sub-networks are a family of students (NAS-BERT)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bertpress.config import Strict


class SupernetSpaceSpec(Strict):
    """Sizes a sub-network may take; every combination whose heads divide the hidden width is in the space."""

    layers: list[int] = Field(min_length=1, description="depths, e.g. [2, 3, 4, 6]")
    hidden: list[int] = Field(min_length=1, description="hidden widths, e.g. [192, 256, 384]")
    heads: list[int] = Field(min_length=1, description="attention head counts, e.g. [6, 8, 12]")
    ffn: list[int] = Field(min_length=1, description="FFN widths, e.g. [512, 1024, 1536]")

    @field_validator("layers", "hidden", "heads", "ffn")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if min(v) < 1:
            raise ValueError(f"sizes {v} must be positive")
        return v


class ShrinkSpec(Strict):
    """Progressive shrinking of the space (NAS-BERT's search-space pruning)."""

    every: int = Field(gt=0, description="shrink every N steps")
    fraction: float = Field(0.2, ge=0, lt=1, description="share of each size bin's shapes dropped per shrinking")
    bins: int = Field(4, gt=0, description="groups of similar parameter count, shrunk separately")
    batches: int = Field(2, gt=0, description="held-out batches each shape is scored on")


class SupernetSpec(Strict):
    """Train the student as a supernet (docs/nas.md): its leading slices are sub-networks of the shapes in
    ``space``; each step trains sampled ones against the teacher. The student's own shape (student.*) is the
    supernet; with ``order: importance`` it must start as the teacher (e.g. ``init: etd-impt``, ``init_args:
    {layers: first}`` with the teacher's depth)."""

    space: SupernetSpaceSpec = Field(description="the sub-network shapes: {layers, hidden, heads, ffn} lists")
    sampling: Literal["sandwich", "random"] = Field(
        "sandwich", description="per step: the largest, the smallest and `random` drawn sub-networks (sandwich rule, "
                                "slimmable networks / BigNAS), or one drawn sub-network (AutoTinyBERT)")
    random: int = Field(2, ge=0, description="sandwich: sub-networks drawn per step besides the largest and smallest")
    depth: str = Field("leading", description="which supernet layers a sub-network of L layers uses: leading (the "
                                              "first L, AutoTinyBERT) or a layer rule (skip, uniform, last, first)")
    inplace: bool = Field(False, description="in-place distillation (slimmable networks / BigNAS): the largest "
                                             "sub-network learns from the teacher, the others from it; sandwich "
                                             "sampling and a largest shape with the teacher's depth, width and heads")
    order: Literal["importance", "leading"] = Field(
        "importance", description="which units a sub-network keeps: the most important of each kind by the "
                                  "teacher's ETD-Impt scores (DynaBERT's rewiring; the supernet must start as the "
                                  "teacher), or the leading ones")
    importance_batches: int = Field(8, ge=1, description="order importance: corpus batches the scores are measured on "
                                                         "(etd-impt's default, so its cached scores are reused)")
    blocks: int | None = Field(None, gt=0, description="block-wise training (NAS-BERT): cut the supernet into this "
                                                       "many blocks of equal depth, each trained to map the "
                                                       "teacher's previous-block output to its block output (hidden "
                                                       "MSE); a sub-network takes the leading layers of every block")
    block: int | None = Field(None, ge=0, description="with blocks: train only this block (0-based), so the blocks "
                                                     "train in separate processes or machines at once; `bertpress "
                                                     "merge-blocks` joins the finished runs into one supernet run")
    shrink: ShrinkSpec | None = Field(None, description="drop the worst shapes of each size bin from sampling every "
                                                        "N steps, e.g. {every: 200, fraction: 0.2} (docs/nas.md)")
