"""One YAML recipe = one experiment: the validated schema and YAML in/out.

A pure schema: it checks types, ranges and the consistency of fields, not names. Initialiser, objective and mapping
names (and their options) are checked against the registries when the run is built (:func:`bertpress.train.build.
check_names`), so this module imports nothing but the configuration helpers.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from bertpress.config import (
    PACKAGED_TEACHER,
    Strict,
    apply_overrides,
    format_errors,
    load_yaml,
    parse_override,
)
from bertpress.errors import BertpressError

#: Recipe fields that never change what a run computes (where it writes, how often it logs, evaluates and
#: checkpoints, the loader's worker count, the validation cap): a run may resume with them changed, and the
#: search's fitness cache ignores them.
RESULT_NEUTRAL_FIELDS = frozenset({"output_dir", "data.cache_dir", "train.eval_every", "train.eval_batches",
                                   "train.save_every", "train.keep_checkpoints", "train.log_every",
                                   "train.num_workers", "train.report_to"})


class MLMHeadFitSpec(Strict):
    """Fitting an MLM head on a teacher without one (on its frozen last layer, the run's corpus; cached)."""

    steps: int = Field(500, gt=0, description="AdamW steps of the head fit")
    batch_size: int = Field(32, gt=0, description="blocks per step")
    lr: float = Field(1e-3, gt=0, le=1, description="learning rate of the head")


class SourceTaskSpec(Strict):
    """A task the teacher is fine-tuned on before distillation (XtremeDistil's source task), with bertpress
    evaluate's fine-tuning and that task's default settings; the fine-tuned teacher is cached."""

    task: str = Field(description="a GLUE task (sst2, mnli, mrpc, ...) or conll2003 (run from data_dir)")
    seed: int = Field(1, description="fine-tuning seed")
    settings: dict[str, Any] = Field(default_factory=dict, description="fine-tuning settings overriding the task's "
                                     "defaults (bertpress evaluate's: lr, epochs, batch_size, max_train_examples...)")
    data_dir: str | None = Field(None, description="task data folder (default $BERTPRESS_DATA or ../shared/data)")


class TeacherSpec(Strict):
    name_or_path: str = Field(PACKAGED_TEACHER, description="HF hub id, local model directory (a fine-tuned "
                              "classifier or tagger keeps its task head), or the packaged alias")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    mlm_head: bool | None = Field(None, description="force (true) or refuse (false) the MLM head; default: detect")
    fit_mlm_head: MLMHeadFitSpec | None = Field(
        None, description="teacher without an MLM head: fit one first (e.g. {steps: 500}) so soft targets and the MLM "
                          "loss can be used; ignored when the teacher has a head")
    source_task: SourceTaskSpec | None = Field(
        None, description="fine-tune the teacher on this task first (cached) and distil from its task logits; its "
                          "labelled examples feed stages with data: labelled (see docs/xtremedistil.md)")

    @model_validator(mode="after")
    def _head_wanted(self) -> TeacherSpec:
        if self.mlm_head is False and self.fit_mlm_head is not None:
            raise ValueError("teacher.mlm_head false refuses an MLM head that teacher.fit_mlm_head would fit: drop "
                             "one of the two")
        if self.source_task is not None and (self.fit_mlm_head is not None or self.mlm_head):
            raise ValueError("teacher.source_task replaces the MLM head by a task head: drop teacher.mlm_head and "
                             "teacher.fit_mlm_head")
        return self


class StudentSpec(Strict):
    num_layers: int | None = Field(None, gt=0, description="student depth (default: half the teacher's layers)")
    hidden_size: int | None = Field(None, gt=0, description="student width (default: the teacher's)")
    num_heads: int | None = Field(None, gt=0, description="attention heads (default: the teacher's head size kept)")
    intermediate_size: int | None = Field(None, gt=0, description="FFN size (default: scaled with the width)")
    architecture: str | None = Field(None, description="student architecture (see Student architectures below; "
                                                       "default: the teacher's type)")
    architecture_options: dict[str, Any] = Field(default_factory=dict, description="options of the architecture")
    init: str = Field("select", description="initialiser name (see Initialisers below)")
    init_args: dict[str, Any] = Field(default_factory=dict, description="options of the initialiser")
    tokenizer: str | None = Field(None, description="tokenizer for the student (must equal the teacher's vocabulary)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> StudentSpec:
        # checkable without the teacher when the recipe gives both (else distill checks the resolved shape)
        if self.hidden_size and self.num_heads and self.hidden_size % self.num_heads:
            near = sorted(sorted((d for d in range(1, self.hidden_size + 1) if self.hidden_size % d == 0),
                                 key=lambda d: (abs(d - self.num_heads), d))[:3])
            raise ValueError(f"student.hidden_size {self.hidden_size} is not divisible by student.num_heads "
                             f"{self.num_heads}: use a head count that divides the width, e.g. "
                             f"{', '.join(map(str, near))}")
        return self


class HubDataset(Strict):
    dataset: str = Field(description="HF datasets name (e.g. wikitext) or a local dataset directory")
    config: str | None = Field(None, description="dataset configuration (e.g. wikitext-103-raw-v1)")
    split: str = Field("train", description="split to read")
    text_field: str = Field("text", description="column holding the text")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) to pin; part of the cache key")


class TaskInputs(Strict):
    task: str = Field(description="a GLUE task (sst2, mrpc, ...) or conll2003: its training inputs, without labels")
    data_dir: str | None = Field(None, description="task data folder (default $BERTPRESS_DATA or ../shared/data)")


def _source_kind(value: Any) -> str:
    """Which kind of data source a recipe entry is: a path, ``{task: ...}`` or a dataset (errors name that one)."""
    if isinstance(value, dict):
        return "TaskInputs" if "task" in value else "HubDataset"
    return type(value).__name__ if isinstance(value, TaskInputs | HubDataset) else "str"


#: A data source; the tags are the member names, which error messages leave out of the field path.
Source = Annotated[Annotated[str, Tag("str")] | Annotated[HubDataset, Tag("HubDataset")]
                   | Annotated[TaskInputs, Tag("TaskInputs")], Discriminator(_source_kind)]


class DataSpec(Strict):
    sources: list[Source] = Field(
        min_length=1, description="text/JSONL files or globs (.gz ok), dataset directories, hub datasets, or "
                                  "{task: NAME} (a task's training inputs, e.g. to augment a transfer set)")
    unit: Literal["blocks", "sentences", "pairs"] = Field(
        "blocks", description="training examples: packed blocks of block_size tokens, or one sentence / one pair "
                              "of consecutive sentences per example (padded to block_size; batches trimmed to their "
                              "longest example), for task-logit transfer (XtremeDistil)")
    text_field: str = Field("text", description="JSONL field (or saved dataset column) holding the text")
    encoding: str = Field("utf-8", description="encoding of text files (lines that do not decode are skipped)")
    block_size: int = Field(128, ge=8, le=8192, description="tokens per packed training block")
    validation_fraction: float = Field(0.01, gt=0, lt=0.5, description="share of blocks held out for validation")
    max_validation_blocks: int = Field(256, gt=0, description="cap on held-out blocks")
    max_blocks: int | None = Field(None, gt=1, description="use at most this many packed blocks (a corpus sample)")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="masking rate when an MLM loss is used")
    cache_dir: str | None = Field(None, description="tokenised-corpus cache (default $BERTPRESS_CACHE or ~/.cache)")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}: use a Python codec name such as utf-8, latin-1 or cp1252") from None
        return v


class ObjectiveSpec(BaseModel):
    """``name`` plus that objective's options, written flat: ``{name: tinybert, hidden: 1.0}``."""

    model_config = ConfigDict(extra="allow")
    name: str = Field("tinybert", description="objective name (see Objectives below)")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MappingSpec(Strict):
    strategy: str = Field("uniform", description="a layer mapping (see Layer mappings below), or explicit")
    layers: list[int] | None = Field(None, description="explicit mapping: teacher layer (1-based) per student layer "
                                     "(repeated or decreasing layers are allowed, with a warning in the log)")

    @model_validator(mode="before")
    @classmethod
    def _layers_imply_explicit(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("layers") is not None and "strategy" not in data:
            data = {**data, "strategy": "explicit"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MappingSpec:
        if self.layers is not None and self.strategy != "explicit":
            raise ValueError(f"mapping.layers is only read with strategy 'explicit' (got {self.strategy!r}): "
                             "drop mapping.layers or set strategy: explicit")
        if self.strategy == "explicit" and not self.layers:
            raise ValueError("mapping strategy 'explicit' needs mapping.layers: list one teacher layer per student layer")
        return self


class TrainSpec(Strict):
    max_steps: int = Field(1000, gt=0, description="optimizer steps")
    batch_size: int = Field(32, gt=0, description="blocks per micro-batch per process")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    lr: float = Field(5e-4, gt=0, le=1, description="peak AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not on biases and LayerNorms)")
    warmup_ratio: float = Field(0.06, ge=0, le=1, description="share of steps with linear warm-up")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0: off)")
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = Field(
        "no", description="autocast: bf16 (GPU, or a CPU with bf16 support), fp16 (GPU), or auto: bf16 where the "
                          "hardware computes it natively (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX), else no")
    eval_every: int = Field(200, ge=0, description="validation every N steps (0: only at the end)")
    eval_batches: int | None = Field(None, gt=0, description="cap on validation batches")
    save_every: int = Field(500, ge=0, description="checkpoint every N steps (0: never)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk")
    log_every: int = Field(10, gt=0, description="metrics logged every N steps")
    num_workers: int = Field(1, ge=0, description="dataloader worker processes")
    freeze_embeddings: bool = Field(False, description="keep the (large) embedding matrix fixed")
    teacher_inference_mode: bool = Field(True, description="run the teacher under torch.inference_mode")
    compile: bool = Field(False, description="torch.compile the student's attention-output and FFN blocks")
    on_nonfinite: Literal["stop", "skip"] = Field("stop", description="on a NaN/Inf loss: stop, or skip the batch")
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab",
                            "trackio"]] = Field(
        ["tensorboard"], description="experiment trackers besides metrics.jsonl (always written); all but "
                                     "tensorboard go through accelerate and need their package installed")


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


#: MobileBERT's pre-training distillation (Sun et al., 2020, sec. 3.5): MLM and soft-target KD, equal weights
FINAL_DISTILLATION = {"name": "distilbert", "alpha_ce": 0.5, "alpha_mlm": 0.5, "alpha_cos": 0.0, "temperature": 1.0}


class ProgressiveSpec(Strict):
    """Progressive knowledge transfer (MobileBERT, Sun et al., 2020): one stage per student layer, then optionally a
    final stage on everything. Layer ``k``'s stage keeps only the objective's matches on student layer ``k``; the
    embeddings stay fixed until the final stage."""

    name: Literal["progressive"] = Field("progressive", description="the schedule")
    steps_per_layer: int = Field(gt=0, description="steps of each layer's stage")
    lower_layers: Literal["freeze", "slow"] = Field(
        "freeze", description="during layer k's stage: freeze the layers below (the paper), or slow them (the "
                              "authors' code: layer k at current_scale x lr, layers below at lower_scale x lr)")
    current_scale: float = Field(3.0, gt=0, description="slow: lr multiplier of the layer in its stage (authors: 3)")
    lower_scale: float = Field(0.3, gt=0, description="slow: lr multiplier of the layers below (authors: 0.3)")
    final_steps: int = Field(0, ge=0, description="steps of the final stage on everything (0: none)")
    final_objective: ObjectiveSpec | None = Field(
        None, description="objective of the final stage; default with an MLM head (the teacher's or a fitted one): "
                          "MLM + soft-target KD (distilbert with alpha_ce 0.5, alpha_mlm 0.5, alpha_cos 0, T 1), "
                          "else the recipe's objective on all layers")
    final_lr: float | None = Field(None, gt=0, le=1, description="peak lr of the final stage (default: train.lr)")

    def stages(self, num_layers: int, has_head: bool) -> list[StageSpec]:
        """The stages this schedule expands into for a student of ``num_layers`` layers."""
        out = []
        for k in range(1, num_layers + 1):
            if self.lower_layers == "freeze":
                trainable, scale = [f"layer {k}", "projections"], {}
            else:
                trainable = [f"layers 1-{k}", "projections"]
                scale = {f"layer {k}": self.current_scale, **({f"layers 1-{k - 1}": self.lower_scale} if k > 1 else {})}
            out.append(StageSpec(name=f"layer-{k}", steps=self.steps_per_layer, trainable=trainable, lr_scale=scale,
                                 only_layers=[k]))
        if self.final_steps:
            final = self.final_objective or (ObjectiveSpec(**FINAL_DISTILLATION) if has_head else None)
            out.append(StageSpec(name="final", steps=self.final_steps, objective=final, lr=self.final_lr))
        return out


class XtremeDistilSpec(Strict):
    """XtremeDistil's staged transfer (Mukherjee et al., 2021; the authors' ``run_xtreme_distil.py``): stage 1
    matches the teacher's top hidden states on the transfer data; stage 2 matches its task logits there, first with
    the encoder frozen and then unfreezing it from the top; stage 3 trains on the source task's labels, unfreezing
    the same way. Every stage stops early on its held-out loss and keeps its best weights."""

    name: Literal["xtremedistil"] = Field("xtremedistil", description="the schedule")
    representation_steps: int = Field(gt=0, description="stage 1 steps (hidden states, all parameters)")
    logit_steps: int = Field(gt=0, description="steps of each stage-2 step of unfreezing (task logits)")
    labelled_steps: int = Field(0, ge=0, description="steps of each stage-3 step of unfreezing (source labels; "
                                                     "0: no stage 3)")
    unfreeze: Literal["gradual", "none"] = Field(
        "gradual", description="gradual: head only, then one more layer from the top per stage, then everything "
                               "(the authors'); none: one stage 2 (and 3) on everything")
    attention: bool = Field(False, description="stage 1 also matches attention probabilities (head counts must "
                                               "agree, or relation heads are used)")
    logit_loss: Literal["mse", "kl"] = Field("mse", description="stage 2 loss: MSE on logits (the authors') or "
                                                                 "soft cross-entropy at temperature 1")
    patience: int | None = Field(3, gt=0, description="early stopping patience of every stage, in validations "
                                                      "(train.eval_every steps); null: no early stopping")
    labelled_lr: float | None = Field(None, gt=0, le=1, description="peak lr of stage 3 (default: train.lr)")

    def stages(self, num_layers: int) -> list[StageSpec]:
        """The stages for a student of ``num_layers`` layers (mapping ``last``: top-aligned)."""
        stop = None if self.patience is None else EarlyStoppingSpec(patience=self.patience)
        representation = ObjectiveSpec(name="tinybert", embedding=0.0, hidden=1.0,
                                       attention=1.0 if self.attention else 0.0, attention_on="probabilities")
        out = [StageSpec(name="representation", steps=self.representation_steps, objective=representation,
                         mapping=MappingSpec(strategy="last"), early_stopping=stop)]
        top = [(f"top-{k}", ["head", f"layers {num_layers - k + 1}-{num_layers}"]) for k in range(1, num_layers + 1)]
        steps = [("head", ["head"]), *top, ("all", ["all"])] if self.unfreeze == "gradual" else [("all", ["all"])]
        loss = "logit_mse" if self.logit_loss == "mse" else "soft_cross_entropy"
        logits = ObjectiveSpec(name="matches", matches=[{"student": "logits", "teacher": "logits", "loss": loss,
                                                         "term": "logits"}])
        labels = ObjectiveSpec(name="matches", masking=False,
                               matches=[{"student": "logits", "teacher": "labels", "loss": "task_loss",
                                         "term": "labels"}])
        for phase, n, objective, data, lr in (("logits", self.logit_steps, logits, "transfer", None),
                                              ("labelled", self.labelled_steps, labels, "labelled", self.labelled_lr)):
            out += [StageSpec(name=f"{phase}-{tag}", steps=n, objective=objective, trainable=trainable, data=data,
                              lr=lr, early_stopping=stop) for tag, trainable in steps if n]
        return out


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
    search: dict[str, Any] | None = Field(None, description="layer mapping search, read and validated by "
                                                            "bertpress search-mapping: see docs/search.md")

    @model_validator(mode="after")
    def _steps_agree(self) -> Recipe:
        """With stages, ``train.max_steps`` is their sum (given, it must agree)."""
        if self.stages and self.schedule:
            raise ValueError("stages and schedule both describe the stages: give one of them")
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
