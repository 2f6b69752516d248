"""Training stages: what one stage trains, with which objective, for how many steps, at which learning rate.

A run is an ordered list of :class:`Stage` (one when the recipe gives no ``stages:``). Stage ``i`` covers the global
optimizer steps ``[start, start + steps)``; one AdamW optimizer spans the run (a parameter keeps its moments across
stages) and one scheduler follows every stage's own linear warm-up and decay (:class:`StageSchedule`), so a
checkpoint at any step, a stage boundary included, resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from bertpress.errors import BertpressError
from bertpress.models.anatomy import Anatomy
from bertpress.objectives.base import Objective
from bertpress.recipe import PART


@dataclass
class Stage:
    """One resolved stage of a run."""

    index: int
    name: str
    start: int
    steps: int
    objective: Objective
    mapping: list[int]
    lr: float
    warmup_ratio: float
    trainable: list[str]
    #: learning-rate multiplier per part (``layer N``, ``layers N-M``, ...); parts not named: 1
    lr_scale: dict[str, float] = field(default_factory=dict)
    #: parameters (names in the distillation module) this stage updates, filled in by the distiller
    trains: list[str] = field(default_factory=list)
    #: ``transfer`` (the corpus) or ``labelled`` (the source task's labelled examples)
    data: str = "transfer"
    #: ``(patience, min_delta)`` of early stopping on the stage's held-out loss, or None
    early_stopping: tuple[int, float] | None = None

    @property
    def end(self) -> int:
        return self.start + self.steps

    @property
    def warmup_steps(self) -> int:
        return math.ceil(self.warmup_ratio * self.steps)

    def describe(self) -> dict:
        """JSON record of the stage (written to ``bertpress.json``)."""
        return {"name": self.name, "start": self.start, "steps": self.steps, "lr": self.lr,
                "warmup_ratio": self.warmup_ratio, "trainable": self.trainable, "mapping": self.mapping,
                "objective": self.objective.describe(), "trained_tensors": len(self.trains),
                **({"lr_scale": self.lr_scale} if self.lr_scale else {}),
                **({"data": self.data} if self.data != "transfer" else {}),
                **({"early_stopping": {"patience": self.early_stopping[0], "min_delta": self.early_stopping[1]}}
                   if self.early_stopping else {})}


def stage_at(stages: Sequence[Stage], step: int) -> Stage:
    """The stage that takes global step ``step`` (0-based count of steps done); the last one past the end."""
    return next((s for s in stages if step < s.end), stages[-1])


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    """The factor of the peak learning rate at ``step`` of ``total``: linear warm-up over ``warmup`` steps, then
    linear decay to 0 (the formula of ``transformers.get_linear_schedule_with_warmup``)."""
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


class StageSchedule:
    """``LambdaLR`` factor for global step ``step``: the stage's ``lr / base_lr`` times its own warm-up/decay."""

    def __init__(self, stages: Sequence[Stage], base_lr: float) -> None:
        self.stages, self.base_lr = list(stages), base_lr

    def __call__(self, step: int) -> float:
        stage = stage_at(self.stages, step)
        factor = linear_warmup_decay(step - stage.start, stage.warmup_steps, stage.steps)
        return factor if stage.lr == self.base_lr else stage.lr / self.base_lr * factor


class ScaledSchedule:
    """``LambdaLR`` factor of one parameter group: the run's :class:`StageSchedule` times the group's multiplier in
    the current stage (``scales[i]`` in stage ``i``)."""

    def __init__(self, schedule: StageSchedule, scales: Sequence[float]) -> None:
        self.schedule, self.scales = schedule, list(scales)

    def __call__(self, step: int) -> float:
        return self.schedule(step) * self.scales[stage_at(self.schedule.stages, step).index]


def lr_scales(parts: Anatomy, objectives: Sequence[nn.Module], stages: Sequence[Stage]) -> dict[int, tuple[float, ...]]:
    """``id(parameter) -> (multiplier in stage 0, stage 1, ...)`` for every parameter some stage's ``lr_scale``
    names (the first entry naming a parameter wins within a stage; 1 elsewhere)."""
    scales: dict[int, list[float]] = {}
    for stage in stages:
        seen: set[int] = set()
        for spec, scale in stage.lr_scale.items():
            for p in part_parameters(parts, objectives, spec):
                if id(p) not in seen:
                    seen.add(id(p))
                    scales.setdefault(id(p), [1.0] * len(stages))[stage.index] = scale
    return {k: tuple(v) for k, v in scales.items()}


def part_parameters(parts: Anatomy, objectives: Sequence[nn.Module], spec: str) -> list[nn.Parameter]:
    """The parameters a ``trainable`` entry names; layer numbers are checked against the student's depth."""
    m = PART.match(spec)
    if m is None:  # the schema refuses these; kept for callers that build stages by hand
        raise BertpressError(f"unknown part {spec!r}: use all, embeddings, 'layer N', 'layers N-M', projections or head")
    if spec == "all":
        modules = [parts.model, *objectives]
    elif spec == "embeddings":
        modules = [parts.embeddings, *([parts.embedding_output] if parts.factorised else [])]
    elif spec == "projections":
        modules = list(objectives)
    elif spec == "head":  # everything of the student outside the embeddings and the layers (MLM head, pooler)
        inside = {id(p) for mod in (parts.embeddings, parts.embedding_output, parts.layers) for p in mod.parameters()}
        return [p for p in parts.model.parameters() if id(p) not in inside]
    else:
        first, last = int(m.group(2)), int(m.group(3) or m.group(2))
        if last > parts.num_layers:
            raise BertpressError(f"stage part {spec!r} names layer {last} but the student has {parts.num_layers}: "
                                 f"use layers 1-{parts.num_layers}")
        modules = [parts.layers[i - 1] for i in range(first, last + 1)]
    return [p for mod in modules for p in mod.parameters()]


def trainable_ids(parts: Anatomy, objectives: Sequence[nn.Module], trainable: Sequence[str]) -> set[int]:
    """``id()`` of every parameter the ``trainable`` entries name."""
    return {id(p) for spec in trainable for p in part_parameters(parts, objectives, spec)}
