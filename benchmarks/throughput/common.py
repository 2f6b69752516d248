"""What the three throughput runners share: the work, its batches, the student, and the step clock.

The work (issue 6): the packaged teacher (all-MiniLM-L6-v2, 6 layers, hidden 384), a 3-layer student initialised by
``select`` (teacher layers 1, 3, 5), TinyBERT-style losses along the uniform mapping (student 1, 2, 3 <- teacher 2,
4, 6; embeddings 0 <- 0): embedding MSE + hidden MSE + attention-probability MSE, each weight 1; batch 32 x 128;
AdamW (lr 5e-4, betas 0.9/0.999, eps 1e-6, weight decay 0.01 except biases and LayerNorms), linear warm-up and decay,
gradient clipping at 1.0; the packed Wikipedia blocks in bertpress's seeded batch order.

Every runner is one process that prints nothing but writes one JSON result (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader
from transformers import PretrainedConfig, PreTrainedModel, get_linear_schedule_with_warmup

REPO = Path(__file__).resolve().parents[2]
SEED = 42
BATCH_SIZE = 32
BLOCK_SIZE = 128
TOKENS_PER_STEP = BATCH_SIZE * BLOCK_SIZE
LR = 5e-4
WARMUP_RATIO = 0.06
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
STUDENT_LAYERS = 3
TEACHER = "packaged:all-MiniLM-L6-v2"


def data_root() -> Path:
    """``$BERTPRESS_DATA`` or ``../shared/data`` beside the repository (the library's rule)."""
    from bertpress.data.tasks.files import default_data_dir

    return default_data_dir()


def corpus_glob() -> str:
    return str(data_root() / "corpus" / "enwiki-wikiextractor-2015" / "AA" / "wiki_*.gz")


def recipe(output_dir: Path, max_steps: int, teacher: str = TEACHER, batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    """The bertpress recipe of the work (its defaults for everything the issue does not fix)."""
    return {
        "name": "bench-throughput",
        "seed": SEED,
        "output_dir": str(output_dir),
        "teacher": {"name_or_path": teacher},
        "student": {"num_layers": STUDENT_LAYERS, "init": "select"},
        "data": {"sources": [corpus_glob()], "block_size": BLOCK_SIZE},
        "objective": {"name": "tinybert", "embedding": 1.0, "hidden": 1.0, "attention": 1.0,
                      "attention_on": "probabilities"},
        "mapping": {"strategy": "uniform"},
        "train": {"max_steps": max_steps, "batch_size": batch_size, "lr": LR, "warmup_ratio": WARMUP_RATIO,
                  "weight_decay": WEIGHT_DECAY, "max_grad_norm": MAX_GRAD_NORM, "log_every": 1,
                  "eval_every": 0, "eval_batches": 1, "save_every": 0,
                  "mixed_precision": "no"},  # the fp32 path the reference loops compute; bf16 is a row of its own
    }


def warmup_steps(max_steps: int) -> int:
    """bertpress's rule: ``ceil(warmup_ratio * max_steps)``."""
    return math.ceil(WARMUP_RATIO * max_steps)


def no_dropout(config: PretrainedConfig) -> PretrainedConfig:
    """Dropout off (the equivalence check compares losses step by step)."""
    config.hidden_dropout_prob = 0.0
    config.attention_probs_dropout_prob = 0.0
    return config


# -- models and data for the two reference loops ------------------------------------------------------------------

def eager_models(dropout: bool, teacher_name: str = TEACHER) -> tuple[PreTrainedModel, PreTrainedModel, list[int], Any]:
    """(teacher, select-initialised student, mapping, tokenizer) with eager attention, as ``output_attentions`` needs.

    Built with bertpress's own constructors, so the three runners start from bit-identical weights.
    """
    from bertpress.init import InitContext, initialise
    from bertpress.models.student import StudentShape, build_student, student_config
    from bertpress.models.teacher import load_teacher
    from bertpress.objectives import resolve_mapping

    teacher = load_teacher(teacher_name)
    config = student_config(teacher.model.config, StudentShape(num_layers=STUDENT_LAYERS))
    if not dropout:
        config = no_dropout(config)
    torch.manual_seed(SEED)
    student = build_student(config, mlm_head=teacher.has_mlm_head)
    initialise("select", InitContext(teacher, student, SEED))
    teacher.model.set_attn_implementation("eager")
    student.set_attn_implementation("eager")
    mapping = resolve_mapping("uniform", STUDENT_LAYERS, teacher.model.config.num_hidden_layers)
    return teacher.model, student, mapping, teacher.tokenizer


def batches(tokenizer, max_steps: int, batch_size: int = BATCH_SIZE) -> DataLoader:
    """The batches bertpress trains on, in its order: ``ResumableBatchSampler`` over the packed corpus's training
    blocks (same cache, same seed), as ``{input_ids, attention_mask}`` dicts, without worker processes."""
    from bertpress.data.corpus import load_corpus
    from bertpress.recipe import DataSpec
    from bertpress.train.data import BlockDataset, ResumableBatchSampler

    corpus = load_corpus(DataSpec(sources=[corpus_glob()], block_size=BLOCK_SIZE), tokenizer, seed=SEED)
    sampler = ResumableBatchSampler(len(corpus.train_index), batch_size, SEED, start=0, total=max_steps)
    pad = tokenizer.pad_token_id

    def collate(rows: list[Tensor]) -> dict[str, Tensor]:
        ids = torch.stack(rows)
        return {"input_ids": ids, "attention_mask": (ids != pad).long()}

    return DataLoader(BlockDataset(corpus.blocks, corpus.train_index), batch_sampler=sampler, collate_fn=collate)


def optimizer_and_schedule(student: nn.Module, max_steps: int
                           ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with bertpress's parameter groups (no decay on biases and LayerNorms) and linear warm-up/decay."""
    from bertpress.optim import decay_groups

    opt = torch.optim.AdamW(decay_groups((p for p in student.parameters() if p.requires_grad), WEIGHT_DECAY), lr=LR,
                            betas=(0.9, 0.999), eps=1e-6)
    return opt, get_linear_schedule_with_warmup(opt, warmup_steps(max_steps), max_steps)


# -- measurement ----------------------------------------------------------------------------------------------------

class StepClock:
    """Timestamps from hooks, so the loops being timed stay unmodified.

    Marks: teacher and student forward (forward pre/post hooks on the two models), ``Tensor.backward`` (wrapped),
    and the end of each optimizer step (a global optimizer post-hook). One step is the interval between two
    optimizer-step ends; within it, *loss* is student-forward end -> backward start, *optimizer* is backward end ->
    step end (gradient clipping + AdamW), and *data & other* is the rest (batch fetch, scheduler, zero_grad, logging).
    """

    def __init__(self, sample_after: int = 0, tokens_per_step: int = TOKENS_PER_STEP,
                 sync: Callable[[], None] | None = None, sync_at: Sequence[int] = ()) -> None:
        self.events: list[tuple[str, float]] = []
        self.tokens_per_step = tokens_per_step
        #: on an accelerator: wait for the device at the ends of steps ``sync_at`` only (the first and last timed
        #: boundaries), so the loops keep whatever overlap of host and device they have; phases are not timed there
        self.sync, self.sync_at = sync, set(sync_at)
        self.sample_after = sample_after  # memory is sampled at the end of this step (the last untimed one)
        self.memory: dict[str, float] = {}
        self.n_steps = 0
        self.cpu_ends: list[float] = []  # process CPU time (all threads) at each step end

    def _sample_memory(self) -> None:
        proc = psutil.Process()
        workers = proc.children(recursive=True)
        self.memory = {"rss_mb": proc.memory_info().rss / 2**20, "workers": len(workers),
                       "workers_uss_mb": sum(w.memory_full_info().uss for w in workers) / 2**20}

    def _step_end(self, *_args: Any) -> None:
        self.n_steps += 1
        if self.sync is not None and self.n_steps in self.sync_at:
            self.sync()
        if self.n_steps == self.sample_after:
            self._sample_memory()  # before the mark: not part of a timed step
        self.cpu_ends.append(time.process_time())
        self.mark("step")

    def mark(self, name: str) -> None:
        self.events.append((name, time.perf_counter()))

    def _marker(self, name: str) -> Callable[..., None]:
        def hook(*_args: Any) -> None:
            self.mark(name)

        return hook

    def install(self, teacher: nn.Module, student: nn.Module) -> StepClock:
        for model, tag in ((teacher, "teacher"), (student, "student")):
            model.register_forward_pre_hook(self._marker(f"{tag}<"))
            model.register_forward_hook(self._marker(f"{tag}>"))
        register_optimizer_step_post_hook(self._step_end)
        original = torch.Tensor.backward

        def backward(tensor: Tensor, *args: Any, **kwargs: Any) -> None:
            self.mark("backward<")
            original(tensor, *args, **kwargs)
            self.mark("backward>")

        torch.Tensor.backward = backward  # type: ignore[method-assign]
        return self

    def step_ends(self) -> list[float]:
        return [t for name, t in self.events if name == "step"]

    def summary(self, warmup: int, steps: int) -> dict[str, Any]:
        """Tokens/s over steps ``warmup+1 .. warmup+steps`` and the mean per-step phase times (ms)."""
        ends = self.step_ends()
        if warmup < 1 or len(ends) < warmup + steps:
            raise RuntimeError(f"{len(ends)} optimizer steps recorded, expected {warmup + steps} (warmup >= 1)")
        t0, t1 = ends[warmup - 1], ends[warmup + steps - 1]
        phases = {"teacher_forward": 0.0, "student_forward": 0.0, "loss": 0.0, "backward": 0.0, "optimizer": 0.0}
        opened: dict[str, float] = {}
        last_student = last_backward = None
        for name, t in self.events:
            if not t0 < t <= t1:
                continue
            if name.endswith("<"):
                opened[name[:-1]] = t
                if name == "backward<" and last_student is not None:
                    phases["loss"] += t - last_student
                    last_student = None
            elif name.endswith(">"):
                key = name[:-1]
                phases[{"teacher": "teacher_forward", "student": "student_forward"}.get(key, key)] += t - opened[key]
                if key == "student":
                    last_student = t
                elif key == "backward":
                    last_backward = t
            elif name == "step" and last_backward is not None:
                phases["optimizer"] += t - last_backward
                last_backward = None
        total = t1 - t0
        phases["data_and_other"] = total - sum(phases.values())
        step_s = [b - a for a, b in zip(ends[warmup - 1:warmup + steps - 1], ends[warmup:warmup + steps],
                                        strict=True)]
        cpu = self.cpu_ends[warmup + steps - 1] - self.cpu_ends[warmup - 1]
        n = steps * self.tokens_per_step
        return {"timed_s": total, "tokens_per_s": n / total, "step_s": step_s, "cpu_s": cpu, "tokens_per_cpu_s": n / cpu,
                "phases_ms": None if self.sync else {k: 1000 * v / steps for k, v in phases.items()}}


@dataclass
class ReferenceRun:
    """What both reference loops start from: models, mapping, batches, optimizer, schedule and the step clock."""

    teacher: PreTrainedModel
    student: PreTrainedModel
    mapping: list[int]
    loader: DataLoader
    opt: torch.optim.Optimizer
    schedule: Any
    clock: StepClock
    max_steps: int


def reference_run(args: argparse.Namespace) -> ReferenceRun:
    """Set up a reference loop (TextBrewer or the plain loop) from the shared command-line arguments."""
    max_steps = args.warmup + args.steps
    teacher, student, mapping, tokenizer = eager_models(dropout=not args.no_dropout, teacher_name=args.teacher)
    teacher.to(args.device)
    student.to(args.device)
    loader = batches(tokenizer, max_steps, args.batch_size)
    opt, schedule = optimizer_and_schedule(student, max_steps)
    clock = step_clock(args).install(teacher, student)
    teacher.eval()
    student.train()
    return ReferenceRun(teacher, student, mapping, loader, opt, schedule, clock, max_steps)


def step_clock(args: argparse.Namespace) -> StepClock:
    """The clock of a run with the shared arguments (device synchronisation at the timed window's ends on CUDA)."""
    cuda = args.device.startswith("cuda")
    return StepClock(sample_after=args.warmup, tokens_per_step=args.batch_size * BLOCK_SIZE,
                     sync=torch.cuda.synchronize if cuda else None, sync_at=(args.warmup, args.warmup + args.steps))


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the reference loops; bertpress: accelerate's)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--teacher", default=TEACHER, help="teacher model (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--no-dropout", action="store_true", help="dropout off (equivalence check)")
    p.add_argument("--out", type=Path, required=True, help="result JSON")
    return p


def finish(out: Path, result: dict[str, Any], clock: StepClock, warmup: int, steps: int) -> None:
    """Add timing (when there were warm-up steps), memory and load, and write ``out``."""
    if warmup >= 1:
        result.update(clock.summary(warmup, steps))
    result.update({
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "memory_after_warmup": clock.memory,
        "load_average_end": list(os.getloadavg()),
        "process_wall_s": time.time() - psutil.Process().create_time(),
        "torch_threads": torch.get_num_threads(),
        "peak_device_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else None,
        "python": sys.version.split()[0],
    })
    out.write_text(json.dumps(result, indent=1))
