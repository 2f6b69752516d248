"""One YAML recipe = one experiment: the validated schema and YAML in/out.

A pure schema: it checks types, ranges and the consistency of fields, not names. Initialiser, objective and mapping
names (and their options) are checked against the registries when the run is built (:func:`bertpress.train.build.
check_names`), so this package imports nothing but the configuration helpers. Sections live in
:mod:`~bertpress.recipe.sections`, stages in :mod:`~bertpress.recipe.stages`, schedules in
:mod:`~bertpress.recipe.schedules`; this module holds the whole recipe and re-exports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from bertpress.config import Strict, apply_overrides, format_errors, load_yaml, parse_override
from bertpress.errors import BertpressError
from bertpress.recipe.schedules import ProgressiveSpec, XtremeDistilSpec
from bertpress.recipe.sections import (
    RESULT_NEUTRAL_FIELDS,
    DataSpec,
    HubDataset,
    MappingSpec,
    MLMHeadFitSpec,
    ObjectiveSpec,
    Source,
    SourceTaskSpec,
    StudentSpec,
    TaskInputs,
    TeacherSpec,
    TrainSpec,
)
from bertpress.recipe.stages import PART, EarlyStoppingSpec, StageSpec
from bertpress.recipe.supernet import SupernetSpaceSpec, SupernetSpec

__all__ = ["PART", "RESULT_NEUTRAL_FIELDS", "DataSpec", "EarlyStoppingSpec", "HubDataset", "MLMHeadFitSpec",
           "MappingSpec", "ObjectiveSpec", "ProgressiveSpec", "Recipe", "Source", "SourceTaskSpec", "StageSpec",
           "StudentSpec", "SupernetSpaceSpec", "SupernetSpec", "TaskInputs", "TeacherSpec", "TrainSpec",
           "XtremeDistilSpec", "load_recipe", "recipe_from_dict"]


class Recipe(Strict):
    """A whole experiment. Every field has a default but ``data.sources`` and ``output_dir``."""

    name: str = Field("bertpress", description="run name")
    seed: int = Field(42, description="seed for init, data order, masking and dropout")
    output_dir: str = Field(description="the run directory: the student (in student/), checkpoints and metrics")
    teacher: TeacherSpec = Field(default_factory=TeacherSpec)
    student: StudentSpec = Field(default_factory=StudentSpec)
    data: DataSpec
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    mapping: MappingSpec = Field(default_factory=MappingSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    stages: list[StageSpec] | None = Field(
        None, min_length=1, description="ordered training stages (see docs/stages.md); without it the run is one "
                                        "stage of train.max_steps with the recipe's objective, mapping and lr")
    schedule: ProgressiveSpec | XtremeDistilSpec | None = Field(
        None, discriminator="name", description="a stage schedule that expands into stages once the student's depth "
        "is known: {name: progressive, steps_per_layer: N} (docs/stages.md) or {name: xtremedistil, ...} "
        "(docs/xtremedistil.md); not with stages")
    supernet: SupernetSpec | None = Field(
        None, description="distil the student as a supernet of many sub-network shapes (NAS-BERT; docs/nas.md)")
    search: dict[str, Any] | None = Field(None, description="layer mapping search, read and validated by "
                                                            "bertpress search-mapping: see docs/search.md")

    @model_validator(mode="after")
    def _steps_agree(self) -> Recipe:
        """With stages, ``train.max_steps`` is their sum (given, it must agree)."""
        if self.stages and self.schedule:
            raise ValueError("stages and schedule both describe the stages: give one of them")
        if self.supernet is not None and (self.stages or self.schedule):
            raise ValueError("supernet: trains one stage for now: drop stages / schedule, or distil the extracted "
                             "students with them afterwards")
        if self.train.average_with_init and (self.student.init == "random" or self.supernet is not None):
            raise ValueError("train.average_with_init averages the distilled student with the teacher weights it "
                             "started from: use an init that copies them (select, etd-impt, ...) without a "
                             "supernet, or set it to 0")
        if self.supernet is not None and self.supernet.inplace and self.supernet.sampling != "sandwich":
            raise ValueError("supernet.inplace: the largest sub-network teaches the others, so it trains in every "
                             "step: use sampling: sandwich")
        if self.supernet is not None and self.supernet.blocks and (self.supernet.inplace
                                                                    or self.supernet.depth != "leading"):
            raise ValueError("supernet.blocks: block-wise training feeds every block the teacher's, and takes each "
                             "block's leading layers: drop inplace and leave depth at leading")
        if self.supernet is not None and self.supernet.block is not None:
            sn = self.supernet
            if sn.blocks is None or sn.block >= sn.blocks:
                raise ValueError(f"supernet.block {sn.block}: names one of the supernet.blocks blocks, counted from 0: "
                                 + ("set supernet.blocks" if sn.blocks is None else f"use 0..{sn.blocks - 1}"))
            if sn.shrink is not None:
                raise ValueError("supernet.block: progressive shrinking scores whole sub-networks, which differ "
                                 "between the block processes until their blocks are merged: drop shrink")
        if self.supernet is not None and self.mapping.strategy == "explicit":
            raise ValueError("supernet: sub-networks of different depths need a mapping rule (uniform, last, skip): "
                             "explicit mapping.layers fit one depth only")
        if (isinstance(self.schedule, XtremeDistilSpec) and self.schedule.labelled_steps
                and self.teacher.source_task is None):
            raise ValueError("schedule xtremedistil: labelled_steps train on teacher.source_task's labels: set "
                             "teacher.source_task (e.g. {task: sst2}), or labelled_steps: 0 with a fine-tuned teacher")
        labelled = [s.name or f"stage-{i}" for i, s in enumerate(self.stages or [], 1) if s.data == "labelled"]
        if labelled and self.teacher.source_task is None:
            raise ValueError(f"stage {labelled[0]} trains on data: labelled, which comes from teacher.source_task: "
                             "set it, or drop data: labelled")
        if self.stages:
            total = sum(s.steps for s in self.stages)
            if "max_steps" in self.train.model_fields_set and self.train.max_steps != total:
                raise ValueError(f"train.max_steps {self.train.max_steps} disagrees with the stages' steps (sum "
                                 f"{total}): drop train.max_steps when stages are given, or make them agree")
            self.train.max_steps = total
        return self

    def resolved_stages(self, num_layers: int | None = None, has_head: bool = False) -> list[StageSpec]:
        """The stages with every default filled in (one stage when the recipe gives none); a ``schedule`` expands
        for a student of ``num_layers`` layers whose MLM head is ``has_head``."""
        t = self.train
        if self.schedule is not None:
            if num_layers is None:
                raise ValueError("schedule: the stages depend on the student's depth: pass num_layers")
            given = (self.schedule.stages(num_layers, has_head) if isinstance(self.schedule, ProgressiveSpec)
                     else self.schedule.stages(num_layers))
        else:
            given = self.stages or [StageSpec(name="distill", steps=t.max_steps)]
        return [StageSpec(name=s.name or f"stage-{i}", steps=s.steps, objective=s.objective or self.objective,
                          mapping=s.mapping or self.mapping, lr=s.lr or t.lr,
                          warmup_ratio=t.warmup_ratio if s.warmup_ratio is None else s.warmup_ratio,
                          trainable=s.trainable, lr_scale=s.lr_scale, only_layers=s.only_layers, data=s.data,
                          early_stopping=s.early_stopping)
                for i, s in enumerate(given, 1)]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def recipe_from_dict(data: Any, overrides: list[str] | None = None, source: str = "recipe", *,
                     schema: type[Recipe] = Recipe) -> Recipe:
    """Validate a recipe dict (after applying ``overrides``) as ``schema``; errors become one line per field."""
    if data is None:
        raise BertpressError(f"{source}: the recipe is empty: write its sections as YAML (teacher, student, data, "
                             "objective, train; see recipes/)")
    if not isinstance(data, dict):
        raise BertpressError(f"{source}: expected a mapping of sections (teacher, student, data, ...), got "
                             f"{type(data).__name__}: write the recipe as YAML key: value pairs")
    try:
        return schema.model_validate(apply_overrides(data, overrides or []))
    except ValidationError as e:
        by_key = {".".join(parse_override(o)[0]): o for o in overrides or []}
        raise BertpressError(format_errors(e, source, by_key)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None, *, schema: type[Recipe] = Recipe) -> Recipe:
    """Read and validate a YAML recipe file (as ``schema``)."""
    path = Path(path)
    if not path.is_file():
        raise BertpressError(f"recipe {str(path)!r} not found: give the path of a YAML recipe (see recipes/)")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BertpressError(f"{path}: invalid YAML{where} ({getattr(e, 'problem', e)}): fix the syntax") from None
    except UnicodeDecodeError:
        raise BertpressError(f"{path}: not UTF-8 text: save the recipe as UTF-8 YAML") from None
    return recipe_from_dict(data, overrides, source=str(path), schema=schema)
