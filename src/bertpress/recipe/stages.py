"""Training stages: what one stage trains, on what, for how long, and when it stops early (docs/stages.md)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from bertpress.config import Strict
from bertpress.recipe.sections import MappingSpec, ObjectiveSpec

#: A part of the student a stage trains: ``all``, ``embeddings``, ``layer N`` / ``layers N-M`` (1-based),
#: ``projections`` (the objective's learned projections) or ``head`` (MLM head and pooler).
PART = re.compile(r"^(all|embeddings|projections|head|layers? (\d+)(?:-(\d+))?)$")


class EarlyStoppingSpec(Strict):
    """Stop a stage when its held-out loss stops improving, and keep its best weights."""

    patience: int = Field(3, gt=0, description="validations (every train.eval_every steps) without improvement "
                                               "before the stage stops (XtremeDistil's code: 5 epochs)")
    min_delta: float = Field(0.0, ge=0, description="smallest decrease of the held-out loss that counts")


class StageSpec(Strict):
    """One training stage; every field it leaves out is the recipe's (``objective``, ``mapping``, ``train.lr``...)."""

    name: str | None = Field(None, description="stage name (default stage-N), recorded in the output")
    steps: int = Field(gt=0, description="optimizer steps of this stage")
    objective: ObjectiveSpec | None = Field(None, description="this stage's objective (default: the recipe's)")
    mapping: MappingSpec | None = Field(None, description="this stage's layer mapping (default: the recipe's)")
    lr: float | None = Field(None, gt=0, le=1, description="peak learning rate of the stage (default: train.lr)")
    warmup_ratio: float | None = Field(None, ge=0, le=1, description="warm-up share of the stage (default: "
                                                                     "train.warmup_ratio)")
    trainable: list[str] = Field(["all"], min_length=1, description="what trains: all, embeddings, 'layer N', "
                                 "'layers N-M', projections, head (the rest stays fixed)")
    lr_scale: dict[str, float] = Field(
        default_factory=dict, description="learning-rate multipliers of trained parts in this stage, e.g. {'layer 3': "
                                          "3.0, 'layers 1-2': 0.3} (the first entry naming a parameter wins; others 1)")
    only_layers: list[int] | None = Field(
        None, min_length=1, description="keep only the objective's matches on these student layers (1-based)")
    data: Literal["transfer", "labelled"] = Field(
        "transfer", description="what the stage trains on: the corpus (data), or the labelled examples of "
                                "teacher.source_task (labels in the batch: match student logits to labels)")
    early_stopping: EarlyStoppingSpec | None = Field(
        None, description="end the stage early when its held-out loss (validated every train.eval_every steps) "
                          "stops improving, and restore its best weights, e.g. {patience: 3}")

    @field_validator("trainable")
    @classmethod
    def _parts(cls, v: list[str]) -> list[str]:
        for part in v:
            _check_part(part)
        return v

    @field_validator("lr_scale")
    @classmethod
    def _scaled_parts(cls, v: dict[str, float]) -> dict[str, float]:
        for part, scale in v.items():
            _check_part(part)
            if not scale > 0:
                raise ValueError(f"lr_scale of {part!r} is {scale}: use a positive multiplier (leave a part out of "
                                 "trainable to keep it fixed)")
        return v

    @field_validator("only_layers")
    @classmethod
    def _layers_from_one(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and min(v) < 1:
            raise ValueError(f"only_layers {v}: student layers are numbered from 1")
        return v


def _check_part(part: str) -> None:
    m = PART.match(part)
    if not m:
        raise ValueError(f"unknown part {part!r}: use all, embeddings, 'layer N', 'layers N-M', projections or head")
    if m.group(3) and int(m.group(3)) < int(m.group(2)):
        raise ValueError(f"part {part!r} ends before it starts: write 'layers {m.group(3)}-{m.group(2)}'")
    if m.group(2) and int(m.group(2)) < 1:
        raise ValueError(f"part {part!r}: layers are numbered from 1")
