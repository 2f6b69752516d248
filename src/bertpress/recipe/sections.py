"""The recipe's sections: teacher, student, data (and its sources), objective, mapping and train."""

from __future__ import annotations

import codecs
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from bertpress.config import PACKAGED_TEACHER, Strict

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
    projection_init: Literal["extracted", "random"] = Field(
        "extracted", description="the objective's learned width projection: extracted (when the init extracts "
                                 "teacher hidden dims, as etd-*: start it as the map placing each student dim on its "
                                 "teacher dim; benchmarks/quality: 4L-256H zero-shot STS-B 80.6 vs 66.9) or random "
                                 "(PyTorch's Linear init)")
    head_match: Literal["extracted", "regrouped"] = Field(
        "extracted", description="attention matches of a student whose heads were extracted one per teacher head (as "
                                 "etd-*), where the mapping points at the layer they came from: extracted (student "
                                 "head j against the teacher head it was extracted from) or regrouped (both sides' "
                                 "Q/K regrouped into the shared relation-head count, which mixes teacher heads when "
                                 "the head counts differ; benchmarks/quality: 4L-256H with TinyBERT's score MSE, "
                                 "proxy STS-B 9.6 vs 18.0 extracted)")

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
    streaming: bool = Field(False, description="stream the hub dataset while the corpus is built (nothing downloaded "
                                               "up front: corpora larger than the disk); not part of the cache key")


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
    average_with_init: float = Field(
        0.0, ge=0, lt=1, description="share of the initial (teacher-copied) weights in the saved student: saved = "
                                     "(1 - s)·distilled + s·initial (WiSE-FT weight averaging, taken once at the "
                                     "end); 0: the distilled weights. For students initialised from the teacher "
                                     "(not init random, not a supernet)")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0: off)")
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = Field(
        "auto", description="autocast: auto (default): bf16 where the hardware computes it natively (a CUDA GPU with "
                            "bf16, a CPU with AVX512-BF16 or AMX), else no (fp32); or bf16, fp16 (GPU), no")
    eval_every: int = Field(200, ge=0, description="validation every N steps (0: only at the end)")
    eval_batches: int | None = Field(None, gt=0, description="cap on validation batches")
    save_every: int = Field(500, ge=0, description="checkpoint every N steps (0: never)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk")
    log_every: int = Field(10, gt=0, description="metrics logged every N steps")
    num_workers: int = Field(1, ge=0, description="dataloader worker processes")
    freeze_embeddings: bool = Field(False, description="keep the (large) embedding matrix fixed")
    teacher_inference_mode: bool = Field(False, description="run the teacher under torch.inference_mode instead of no_grad (its features are then cloned for the loss: slower)")
    teacher_cache: bool = Field(
        False, description="compute the teacher's features once per training block, store them on disk (bf16, "
                           "memory-mapped, under data.cache_dir) and read them instead of running the teacher: for "
                           "corpora read more than once (several epochs, repeated runs); packed blocks without MLM "
                           "masking only")
    teacher_cache_max_gb: float = Field(20.0, gt=0, description="refuse to build a teacher cache larger than this")
    compile: bool = Field(False, description="torch.compile the student's attention-output and FFN blocks")
    on_nonfinite: Literal["stop", "skip"] = Field("stop", description="on a NaN/Inf loss: stop, or skip the batch")
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive", "swanlab",
                            "trackio"]] = Field(
        ["tensorboard"], description="experiment trackers besides metrics.jsonl (always written); all but "
                                     "tensorboard go through accelerate and need their package installed")
