"""Fine-tuning recipes per task, and ``KEY=VALUE`` / ``TASK.KEY=VALUE`` overrides of them.

The defaults follow the BERT / Hugging Face reference recipes (AdamW with weight decay 0.01, linear decay after 10%
warmup, batch 32, 3 epochs, 128 tokens; SQuAD 2 epochs of 384-token windows with stride 128), at the top of BERT's
learning-rate range (5e-5, which suits small encoders; 2e-5 for WNLI), with three seeds wherever a task has fewer
than 10k training examples. STS-B and CoLA train 6 epochs: at 3, small students are under-trained there, and the
teacher gains too (``benchmarks/quality/results/schedule*.md``); MRPC did not gain, RTE is not measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bertpress.config import format_errors, parse_override
from bertpress.errors import BertpressError
from bertpress.evaluate.tasks import TASKS


class FinetuneSettings(BaseModel):
    """How one task is fine-tuned and evaluated (every field is part of the result cache key)."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(5e-5, gt=0, description="peak learning rate (ignored when lr_grid is set)")
    lr_grid: list[float] | None = Field(
        None, min_length=1, description="learning rates to try; the one with the best mean dev score is reported")
    epochs: float = Field(3.0, gt=0, description="passes over the training set (fractions allowed)")
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(128, ge=16, description="tokens per example (longer ones are truncated)")
    seeds: list[int] = Field([1], min_length=1, description="one fine-tuning run per seed; mean and spread reported")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_train_examples: int | None = Field(
        None, ge=1, description="train on a fixed random subset of this many examples (the same for every model)")
    max_eval_examples: int | None = Field(None, ge=1, description="evaluate on the first N dev examples")
    eval_batch_size: int = Field(64, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="autocast for fine-tuning and prediction: bf16 (GPU, or a CPU with bf16 support) or fp16 "
                          "(GPU, with loss scaling)")

    def run_key(self, lr: float, seed: int) -> dict[str, Any]:
        """What decides one run's result: these settings with the run's learning rate and seed (fp32 runs keep the
        keys they had before ``mixed_precision`` existed, so their cached results stay valid)."""
        data = self.model_dump(exclude={"seeds", "lr_grid", "lr", "eval_batch_size", "mixed_precision"})
        precision = {} if self.mixed_precision == "no" else {"mixed_precision": self.mixed_precision}
        return {**data, **precision, "lr": lr, "seed": seed}

    @property
    def learning_rates(self) -> list[float]:
        return list(self.lr_grid) if self.lr_grid else [self.lr]


class SquadSettings(FinetuneSettings):
    """SQuAD adds the sliding window over long contexts and the span decoding."""

    max_length: int = Field(384, ge=32)
    doc_stride: int = Field(128, ge=1, description="tokens shared by consecutive windows over one context")
    max_answer_length: int = Field(30, ge=1, description="longest answer span in tokens")
    n_best: int = Field(20, ge=1, description="start and end candidates per window")
    null_threshold: float = Field(
        0.0, description="SQuAD2.0: answer 'no answer' when null score minus best span score exceeds this")


class EmbeddingSettings(BaseModel):
    """How a zero-shot embedding task is scored (no fine-tuning, so no learning rate, epochs or seeds)."""

    model_config = ConfigDict(extra="forbid")

    pooling: Literal["auto", "mean", "cls", "max"] = Field(
        "auto", description="sentence pooling; auto: the model's (or its teacher's) sentence-transformers config, "
                            "else mean")
    max_length: int = Field(128, ge=8, description="tokens per sentence (longer ones are truncated)")
    max_eval_examples: int | None = Field(None, ge=2, description="score only the first N dev pairs")
    eval_batch_size: int = Field(64, ge=1)


_SMALL = {"seeds": [1, 2, 3]}
#: Measured by the quality benchmark's schedule phase (3 seeds; at 3 -> 6 epochs): STS-B teacher 84.7 -> 86.0, 3-layer
#: student 66.8 -> 77.4, copied layers 42.7 -> 72.8; CoLA 27.2 -> 29.4, 9.8 -> 19.9, 10.0 -> 20.4.
_LONGER = {**_SMALL, "epochs": 6.0}
DEFAULTS: dict[str, FinetuneSettings | EmbeddingSettings] = {
    "cola": FinetuneSettings(**_LONGER),
    "sst2": FinetuneSettings(),
    "mrpc": FinetuneSettings(**_SMALL),
    "qqp": FinetuneSettings(),
    "stsb": FinetuneSettings(**_LONGER),
    "mnli": FinetuneSettings(),
    "qnli": FinetuneSettings(),
    "rte": FinetuneSettings(**_SMALL),
    "wnli": FinetuneSettings(lr=2e-5, **_SMALL),
    "squad": SquadSettings(epochs=2),
    "squad2": SquadSettings(epochs=2),
    "conll2003": FinetuneSettings(),
    "stsb-zeroshot": EmbeddingSettings(),
}


def resolve_settings(tasks: Sequence[str], overrides: Sequence[str] = ()
                     ) -> dict[str, FinetuneSettings | EmbeddingSettings]:
    """Each task's defaults with ``overrides`` applied in order: ``KEY=VALUE`` sets a field on every task that has
    it, ``TASK.KEY=VALUE`` on one task; values are YAML (``seeds=[1,2]``)."""
    data = {t: DEFAULTS[t].model_dump() for t in tasks}
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 1:
            targets = [t for t in tasks if path[0] in type(DEFAULTS[t]).model_fields]
            if not targets:
                raise BertpressError(f"--set {text}: no selected task has a setting {path[0]!r}: choose from "
                                     f"{', '.join(sorted({f for t in tasks for f in type(DEFAULTS[t]).model_fields}))}")
        elif len(path) == 2:
            if path[0] not in TASKS:
                raise BertpressError(f"--set {text}: unknown task {path[0]!r}: write TASK.KEY=VALUE with a task "
                                     f"from {', '.join(TASKS)}")
            if path[0] not in data:
                raise BertpressError(f"--set {text}: task {path[0]!r} is not evaluated: add it to --tasks or drop "
                                     "the override")
            targets = [path[0]]
        else:
            raise BertpressError(f"--set {text}: expected KEY=VALUE or TASK.KEY=VALUE: e.g. --set rte.epochs=10")
        for t in targets:
            data[t][path[-1]] = value
    out = {}
    for t in tasks:
        try:
            out[t] = type(DEFAULTS[t]).model_validate(data[t])
        except ValidationError as e:
            raise BertpressError(format_errors(e, source=f"settings of {t}")) from None
    return out
