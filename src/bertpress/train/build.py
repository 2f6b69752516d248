"""From a recipe to a runnable distillation: names checked against the registries, then every part built once.

``resolve_recipe`` is the one way to turn a path, dict or :class:`Recipe` (plus ``--set`` overrides) into a recipe
whose initialiser, objective and mapping names and options are known to the registries; ``build_run`` builds what
every stage needs (teacher, student configuration, mappings, objectives, student) for ``distill``, the quickstart,
the search and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedModel

from bertpress.config import validate_options
from bertpress.errors import BertpressError
from bertpress.init import INITIALISERS, InitContext, check_initialiser
from bertpress.models.architectures import ARCHITECTURES, architecture_config
from bertpress.models.student import StudentShape, build_student, check_same_vocabulary, student_config
from bertpress.models.teacher import Teacher, load_teacher
from bertpress.nas.space import Arch, ArchSpace
from bertpress.nas.supernet import Supernet
from bertpress.nas.training import SupernetObjective
from bertpress.objectives import MAPPINGS, OBJECTIVES, ObjectiveContext, build_objective, resolve_mapping
from bertpress.objectives.base import Objective
from bertpress.objectives.matches import MatchObjective
from bertpress.recipe import MappingSpec, ObjectiveSpec, Recipe, load_recipe, recipe_from_dict
from bertpress.registry import Registry
from bertpress.train.preflight import check_setup
from bertpress.train.stages import Stage


def _name_problem(registry: Registry, name: str, what: str, extra: tuple[str, ...] = ()) -> str | None:
    if name in registry or name in extra:
        return None
    return f"unknown {what} {name!r}: choose one of {', '.join([*registry.names(), *extra])}"


def _options_problem(registry: Registry, name: str, options: dict[str, Any], where: str) -> str | None:
    try:
        validate_options(registry.get(name).options, registry.kind, name, options, where)
    except ValueError as e:
        return str(e)
    return None


def _objective_problems(spec: ObjectiveSpec, where: str) -> list[tuple[str, str]]:
    bad = _name_problem(OBJECTIVES, spec.name, "objective")
    if bad:
        return [(f"{where}.name", bad)]
    bad = _options_problem(OBJECTIVES, spec.name, spec.options, where)
    return [(where, bad)] if bad else []


def _mapping_problems(spec: MappingSpec, where: str) -> list[tuple[str, str]]:
    bad = _name_problem(MAPPINGS, spec.strategy, "mapping strategy", ("explicit",))
    return [(f"{where}.strategy", bad)] if bad else []


def check_names(recipe: Recipe, source: str = "recipe") -> Recipe:
    """Refuse unknown initialiser, objective and mapping names and invalid options, one line per problem."""
    problems: list[tuple[str, str]] = []
    bad = _name_problem(INITIALISERS, recipe.student.init, "initialiser")
    if bad:
        problems.append(("student.init", bad))
    else:
        bad = _options_problem(INITIALISERS, recipe.student.init, recipe.student.init_args, "student.init_args")
        if bad:
            problems.append(("student.init_args", bad))
    arch = recipe.student.architecture
    if arch is not None:
        bad = _name_problem(ARCHITECTURES, arch, "student architecture")
        bad = bad or _options_problem(ARCHITECTURES, arch, recipe.student.architecture_options,
                                      "student.architecture_options")
        if bad:
            problems.append(("student.architecture", bad))
    problems += _objective_problems(recipe.objective, "objective")
    problems += _mapping_problems(recipe.mapping, "mapping")
    if getattr(recipe.schedule, "final_objective", None) is not None:
        problems += _objective_problems(recipe.schedule.final_objective, "schedule.final_objective")
    for i, stage in enumerate(recipe.stages or []):
        if stage.objective is not None:
            problems += _objective_problems(stage.objective, f"stages.{i}.objective")
        if stage.mapping is not None:
            problems += _mapping_problems(stage.mapping, f"stages.{i}.mapping")
    if problems:
        lines = [f"{source}: {text}" if text.startswith(f"{loc}.") else f"{source}: {loc}: {text}"
                 for loc, text in problems]
        raise BertpressError("\n".join(dict.fromkeys(lines)))
    return recipe


def resolve_recipe(recipe: Recipe | str | Path | dict, overrides: list[str] | None = None, *,
                   schema: type[Recipe] = Recipe) -> Recipe:
    """A validated recipe (``schema``) from a path, a dict or a recipe, with ``overrides`` applied and its names
    checked against the registries."""
    source = "recipe"
    if isinstance(recipe, Recipe):
        recipe = recipe_from_dict(recipe.to_dict(), overrides, schema=schema) if overrides or not isinstance(
            recipe, schema) else recipe
    elif isinstance(recipe, (str, Path)):
        source = str(recipe)
        recipe = load_recipe(recipe, overrides, schema=schema)
    else:  # a dict (anything else is refused by recipe_from_dict in one line)
        recipe = recipe_from_dict(recipe, overrides, schema=schema)
    return check_names(recipe, source)


@dataclass
class Run:
    """Everything a recipe builds before training: the frozen teacher, the student (randomly initialised, not yet
    initialised from the teacher), its tokenizer and configuration, and the stages with their objectives."""

    recipe: Recipe
    teacher: Teacher
    tokenizer: Any
    student_config: PretrainedConfig
    stages: list[Stage]
    student: PreTrainedModel
    #: the student as a supernet (``recipe.supernet``), else None
    supernet: Supernet | None = None

    @property
    def stage_specs(self) -> list:
        """The recipe's stages as resolved for this student (a schedule expanded)."""
        return self.recipe.resolved_stages(self.student_config.num_hidden_layers, self.has_head)

    @property
    def has_head(self) -> bool:
        """Whether the student is built with an MLM head (the teacher has one, or fits one)."""
        return with_mlm_head(self.recipe, self.teacher)

    @property
    def mapping(self) -> list[int]:
        """The layer mapping of the last stage (the run's, when it has one stage)."""
        return self.stages[-1].mapping


def with_mlm_head(recipe: Recipe, teacher: Teacher) -> bool:
    """Whether the run has an MLM head: the teacher's, or one fitted on it later in the run (teacher.fit_mlm_head),
    which counts from the start."""
    return teacher.has_mlm_head or recipe.teacher.fit_mlm_head is not None


def student_tokenizer(recipe: Recipe, teacher: Teacher):
    """The teacher's tokenizer, or ``student.tokenizer`` when it has the same vocabulary."""
    if recipe.student.tokenizer is None:
        return teacher.tokenizer
    try:
        tok = AutoTokenizer.from_pretrained(recipe.student.tokenizer)
    except (OSError, ValueError) as e:
        raise BertpressError(f"cannot load student.tokenizer {recipe.student.tokenizer!r} ({e}): fix the path") from None
    check_same_vocabulary(teacher.tokenizer, tok)
    return tok


def build_stages(recipe: Recipe, teacher_config: PretrainedConfig, s_config: PretrainedConfig,
                 has_head: bool) -> list[Stage]:
    """Every stage with its mapping and objective; projections are initialised from the recipe's seed (stage i
    from ``seed + i``), so the same recipe always starts from the same weights."""
    stages, start = [], 0
    specs = recipe.resolved_stages(s_config.num_hidden_layers, has_head)
    if recipe.schedule is not None:  # the schedule's stages fix the run's length, as written stages do
        total = sum(s.steps for s in specs)
        if "max_steps" in recipe.train.model_fields_set and recipe.train.max_steps != total:
            raise BertpressError(f"train.max_steps {recipe.train.max_steps} disagrees with the schedule's "
                                 f"{len(specs)} stages ({total} steps): drop train.max_steps with a schedule")
        recipe.train.max_steps = total
    for i, spec in enumerate(specs):
        mapping = resolve_mapping(spec.mapping.strategy, s_config.num_hidden_layers,
                                  teacher_config.num_hidden_layers, spec.mapping.layers)
        ctx = ObjectiveContext(teacher_config, s_config, mapping, has_head, has_head)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed + i)
            if recipe.supernet is not None:
                objective = supernet_objective(recipe, spec, teacher_config, s_config, has_head)
            else:
                objective = build_objective(spec.objective.name, spec.objective.options, ctx)
            if spec.only_layers is not None:
                objective = only_layers(objective, spec.only_layers, ctx, spec.name)
        stop = spec.early_stopping
        stages.append(Stage(i, spec.name, start, spec.steps, objective, mapping, spec.lr, spec.warmup_ratio,
                            spec.trainable, dict(spec.lr_scale), data=spec.data,
                            early_stopping=(stop.patience, stop.min_delta) if stop else None))
        start += spec.steps
    return stages


def arch_space(recipe: Recipe) -> ArchSpace:
    """The sub-network shapes of ``recipe.supernet``."""
    space = recipe.supernet.space
    return ArchSpace(tuple(space.layers), tuple(space.hidden), tuple(space.heads), tuple(space.ffn))


def supernet_objective(recipe: Recipe, spec, teacher_config: PretrainedConfig, s_config: PretrainedConfig,
                       has_head: bool) -> SupernetObjective:
    """The stage's objective for every sub-network shape, each with the mapping a solo student of its depth gets."""
    def build(arch: Arch) -> Objective:
        config = student_config(s_config, StudentShape(arch.layers, arch.hidden, arch.heads, arch.ffn))
        mapping = resolve_mapping(spec.mapping.strategy, arch.layers, teacher_config.num_hidden_layers, None)
        ctx = ObjectiveContext(teacher_config, config, mapping, has_head, has_head)
        return build_objective(spec.objective.name, spec.objective.options, ctx)

    blocks = recipe.supernet.blocks
    size = teacher_config.num_hidden_layers // blocks if blocks else 0
    return SupernetObjective(arch_space(recipe), build, spec.objective.name,
                             frozenset(b * size for b in range(1, blocks + 1)) if blocks else frozenset())


def only_layers(objective: Objective, layers: list[int], ctx: ObjectiveContext, stage: str) -> MatchObjective:
    """``objective`` with only its matches on the student ``layers`` (a layer's stage of progressive transfer)."""
    if not isinstance(objective, MatchObjective):
        raise BertpressError(f"stage {stage}: only_layers needs an objective made of matches, not "
                             f"{type(objective).__name__}: use a preset (tinybert, minilm, mobilebert) or matches")
    kept = [m for m in objective.matches if m.student.layer in layers]
    if not kept:
        raise BertpressError(f"stage {stage}: the objective has no match on student layers {layers} (it reads "
                             f"{sorted({str(m.student) for m in objective.matches})}): map those layers or drop "
                             "only_layers")
    return MatchObjective(kept, ctx, needs_masking=any(m.teacher.kind == "labels" for m in kept))


def build_run(recipe: Recipe | str | Path | dict, overrides: list[str] | None = None, *,
              teacher_path: str | None = None, teacher: Teacher | None = None) -> Run:
    """Teacher → student configuration → mappings → objectives → student, as ``recipe`` says.

    Cheap checks that need the models but no corpus run here (sequence length, mask token, precision, logits
    without a head, the initialiser's shape checks), so a bad recipe fails before anything is written.
    ``teacher_path``: the teacher to load instead of ``teacher.name_or_path`` (the source-task teacher that
    :func:`bertpress.pipeline.distill` fine-tuned); a recipe with ``teacher.source_task`` needs it. ``teacher``:
    that teacher already loaded (several runs share it).
    """
    recipe = resolve_recipe(recipe, overrides)
    if recipe.teacher.source_task is not None and teacher_path is None:
        raise BertpressError("teacher.source_task: the teacher is fine-tuned on the task before distilling: run the "
                             "recipe with bertpress distill (or bertpress.distill), which does it and caches it")
    if teacher is None:
        teacher = load_teacher(teacher_path or recipe.teacher.name_or_path, revision=recipe.teacher.revision,
                               mlm_head=recipe.teacher.mlm_head)
    if recipe.teacher.source_task is not None and teacher.task is None:
        raise BertpressError(f"teacher {teacher_path}: not a fine-tuned classifier or tagger (config architectures "
                             "*ForSequenceClassification / *ForTokenClassification)")
    tokenizer = student_tokenizer(recipe, teacher)
    spec = recipe.student
    s_config = architecture_config(spec.architecture, teacher.model.config,
                                   StudentShape(spec.num_layers, spec.hidden_size, spec.num_heads,
                                                spec.intermediate_size), spec.architecture_options)
    has_head = with_mlm_head(recipe, teacher)
    stages = build_stages(recipe, teacher.model.config, s_config, has_head)
    for stage in stages:
        check_setup(recipe, teacher.model.config, tokenizer, stage.objective)
        if any(r.logits for r in stage.objective.requests()) and not (has_head or teacher.task):
            raise BertpressError(f"stage {stage.name}: the objective reads logits but the teacher has neither an MLM "
                                 "head nor a task head: fit one (teacher.fit_mlm_head), fine-tune the teacher "
                                 "(teacher.source_task), or drop the logits matches")
    torch.manual_seed(recipe.seed)
    student = build_student(s_config, mlm_head=has_head, task=teacher.task)
    check_initialiser(spec.init, InitContext(teacher, student, recipe.seed), spec.init_args)
    supernet = None
    if recipe.supernet is not None:
        supernet = Supernet(student, arch_space(recipe), recipe.supernet.depth, recipe.supernet.blocks)
        big, t = supernet.space.largest, teacher.model.config
        if recipe.supernet.blocks and s_config.num_hidden_layers != t.num_hidden_layers:
            raise BertpressError(f"supernet.blocks: each supernet block learns the teacher's block of the same "
                                 f"layers, so the supernet needs the teacher's {t.num_hidden_layers} layers (it has "
                                 f"{s_config.num_hidden_layers}): set student.num_layers")
        if recipe.supernet.inplace and (big.layers, big.hidden, big.heads) != (
                t.num_hidden_layers, t.hidden_size, t.num_attention_heads):
            raise BertpressError(f"supernet.inplace: the largest sub-network {big.name} teaches the others in the "
                                 f"teacher's place, so it needs the teacher's {t.num_hidden_layers} layers, hidden "
                                 f"{t.hidden_size} and {t.num_attention_heads} heads: add them to the space, or drop "
                                 "inplace")
    return Run(recipe, teacher, tokenizer, s_config, stages, student, supernet)
