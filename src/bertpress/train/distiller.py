"""The distillation loop: teacher features → student features → objective, on accelerate, stage after stage.

One process, one GPU or many (DDP via ``accelerate launch``), optional mixed precision; AdamW with each stage's linear
warm-up and decay, gradient accumulation and clipping, validation at intervals, atomic checkpoints and exact resume
(inside any stage); callbacks (:mod:`bertpress.train.callbacks`) at stage start, step end, evaluation and save.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from bertpress.data.corpus import PackedCorpus
from bertpress.errors import BertpressError
from bertpress.models.anatomy import anatomy
from bertpress.models.dropout import use_fast_dropout
from bertpress.models.features import Features, FeatureTap, model_inputs, teacher_forward
from bertpress.models.teacher import Teacher
from bertpress.objectives.base import Objective
from bertpress.optim import adamw, decay_groups
from bertpress.progress import bars_enabled
from bertpress.train.callbacks import Callback, fire
from bertpress.train.checkpoint import (
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    load_extra,
    save_checkpoint,
)
from bertpress.train.data import Batcher, BlockDataset, LabelledDataset, ResumableBatchSampler
from bertpress.train.early_stopping import BestWeights
from bertpress.train.metrics import MetricsLog
from bertpress.train.nonfinite import NonFiniteGuard
from bertpress.train.precision import resolve_precision
from bertpress.train.reach import fill_stage_parameters
from bertpress.train.stages import ScaledSchedule, Stage, StageSchedule, lr_scales, stage_at
from bertpress.train.teacher_cache import TeacherCache, cache_refusal, open_teacher_cache

log = logging.getLogger(__name__)

#: Validation batches are masked with this fixed seed, so every evaluation sees the same inputs.
VALID_SEED = 7919


class DistillModule(nn.Module):
    """The trainable part: the student and every stage's objective (with its projections); ``forward`` returns
    (loss, terms) of the active stage's objective."""

    def __init__(self, student: PreTrainedModel, objectives: Sequence[Objective], compile_student: bool = False) -> None:
        super().__init__()
        self.student, self.objectives = student, nn.ModuleList(objectives)
        self.parts = anatomy(student)
        if compile_student:
            # compile the hook-free blocks of every layer (attention output, FFN) in place: LayerNorm, GELU,
            # dropout and residual adds fuse, while the hooked Q/K/V projections stay eager (no graph breaks)
            for layer in self.parts.layers:
                for block in self.parts.layout.compile_blocks:
                    layer.get_submodule(block).compile()
        self.active = 0
        self._tap: FeatureTap | None = None
        self.activate(0)

    def activate(self, index: int) -> None:
        """Make objective ``index`` the one trained: hooks capture what it reads, and only that."""
        if self._tap is not None:
            self._tap.close()
        self.active = index
        self._tap = FeatureTap(self.parts, self.objectives[index].requests()[1], kernel=True)

    def forward(self, batch: dict[str, Tensor], teacher_feats) -> tuple[Tensor, dict[str, Tensor]]:
        feats = self._tap(**model_inputs(batch))
        return self.objectives[self.active](feats, teacher_feats, batch)


class Distiller:
    """Runs one distillation through its stages; ``run()`` returns the final metrics. Only the main process writes
    files. ``stages`` come from :func:`bertpress.train.build.build_run` (one stage when the recipe has none);
    stages with ``data: labelled`` read ``labelled`` (examples with ``labels``) instead of ``corpus``."""

    def __init__(self, *, teacher: Teacher, student: PreTrainedModel, stages: Sequence[Stage], corpus: PackedCorpus,
                 tokenizer, train, seed: int, out_dir: Path, mlm_probability: float = 0.15,
                 accelerator: Accelerator | None = None, callbacks: Sequence[Callback] = (),
                 labelled: PackedCorpus | None = None, module: nn.Module | None = None) -> None:
        self.teacher, self.cfg, self.seed = teacher, train, seed
        self.stages, self.callbacks = list(stages), list(callbacks)
        if labelled is None and any(s.data == "labelled" for s in self.stages):
            name = next(s.name for s in self.stages if s.data == "labelled")
            raise BertpressError(f"stage {name} trains on labelled data but the run has none: set "
                                 "teacher.source_task, or drop data: labelled")
        self.datasets = {"transfer": corpus, **({"labelled": labelled} if labelled is not None else {})}
        self.corpus = corpus
        self.out_dir = Path(out_dir)
        self.acc = accelerator or Accelerator(mixed_precision=resolve_precision(train.mixed_precision))
        self.teacher.model.to(self.acc.device)
        segments = teacher.parts.layout.token_type_ids and getattr(teacher.model.config, "type_vocab_size", 0) > 1
        self.batchers = {name: Batcher(tokenizer, masking=False, probability=mlm_probability, seed=seed,
                                       trim=d.meta.get("unit", "blocks") != "blocks", token_types=segments and d.meta.get(
                                           "unit", "blocks") != "blocks") for name, d in self.datasets.items()}
        self.batcher = self.batchers["transfer"]
        # ``module``: another trainable part with DistillModule's interface (a supernet's, bertpress.nas.training)
        self.module = module or DistillModule(student, [s.objective for s in self.stages], compile_student=train.compile)
        use_fast_dropout(self.module.student)  # 16-bit dropout masks on CPU (bertpress.models.dropout)
        self.teacher_tap: FeatureTap | None = None
        #: the teacher forward of training batches, when a cohort shares one (``inputs -> Features``)
        self.shared_teacher: Callable[[dict[str, Tensor]], Features] | None = None
        #: stage index -> the on-disk teacher features of its training blocks (``train.teacher_cache``)
        self.teacher_caches: dict[int, TeacherCache] = {}
        self.stage = self.stages[0]
        self.frozen = fill_stage_parameters(
            self.module, self.stages, self.datasets, self.batchers, teacher.parts,
            student.get_input_embeddings().weight if train.freeze_embeddings else None)
        trained = {n for stage in self.stages for n in stage.trains}
        groups = decay_groups((p for n, p in self.module.named_parameters() if n in trained), train.weight_decay)
        schedule = StageSchedule(self.stages, train.lr)
        scales = lr_scales(self.module.parts, list(self.module.objectives), self.stages)
        if scales:  # one group per (decay, multipliers): each part follows its own multiplier in every stage
            ones = (1.0,) * len(self.stages)
            groups = [{**g, "params": [p for p in g["params"] if scales.get(id(p), ones) == sig], "lr_scale": list(sig)}
                      for g in groups for sig in dict.fromkeys(scales.get(id(p), ones) for p in g["params"])]
        self.optimizer = adamw(groups, train.lr, betas=(0.9, 0.999), eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [ScaledSchedule(schedule, g["lr_scale"]) for g in groups] if scales else schedule)
        # DDP registers the parameters that require grad when it wraps the module: every stage's, then the first
        # stage's flags are set again (with several stages the accelerator lets DDP skip unused parameters)
        for name, p in self.module.named_parameters():
            p.requires_grad_(name in trained)
        self.model, self.optimizer = self.acc.prepare(self.module, self.optimizer)
        self._enter(self.stages[0])
        self.acc.register_for_checkpointing(self.scheduler)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.state = TrainState()
        self.early = BestWeights(self.state.early)
        self.guard = NonFiniteGuard(train, self.acc, self.ckpt_root)

    # -- set-up -----------------------------------------------------------------------------------------------
    def open_teacher_caches(self, root: Path) -> None:
        """``train.teacher_cache``: open every stage's cache of teacher features under ``root``, the main process
        building a missing one first (its size logged and checked before any compute)."""
        for stage in self.stages:
            data, batcher = self.datasets[stage.data], self.batchers[stage.data]
            refusal = cache_refusal(stage.objective, data)
            if refusal is not None:
                raise BertpressError(refusal if len(self.stages) == 1 else f"stage {stage.name}: {refusal}")
            with self.acc.main_process_first():
                self.teacher_caches[stage.index] = open_teacher_cache(
                    self.teacher, stage.objective.requests()[0], data,
                    lambda ids, b=batcher: model_inputs(b(ids, position=0)), root=root,
                    max_gb=self.cfg.teacher_cache_max_gb, device=self.acc.device, build=self.acc.is_main_process)

    def _enter(self, stage: Stage) -> None:
        """Switch objective, feature hooks, masking and trainable parameters to ``stage``."""
        self.stage = stage
        self.corpus, self.batcher = self.datasets[stage.data], self.batchers[stage.data]
        self.module.activate(stage.index)
        if self.teacher_tap is not None:
            self.teacher_tap.close()
        self.teacher_tap = FeatureTap(self.teacher.parts, stage.objective.requests()[0], truncate=True)
        self.batcher.masking = stage.objective.needs_masking
        trains = set(stage.trains)
        for name, p in self.module.named_parameters():
            p.requires_grad_(name in trains)

    def _loader(self, start_micro: int) -> DataLoader:
        """Batches of the current stage's data from its ``start_micro``-th micro-batch on."""
        n_proc, data = self.acc.num_processes, self.corpus
        total = self.cfg.max_steps * self.cfg.grad_accum * n_proc
        sampler = ResumableBatchSampler(len(data.train_index), self.cfg.batch_size, self.seed,
                                        start=start_micro * n_proc, total=total)
        dataset = (BlockDataset(data.blocks, data.train_index) if data.labels is None
                   else LabelledDataset(data.blocks, data.labels, data.train_index))
        # a generator of its own: starting an iterator draws a base seed, which must not advance the global RNG
        # (dropout's), or a resumed run (restored RNG, then a new iterator) would drop out different units
        loader = DataLoader(dataset, batch_sampler=sampler,
                            generator=torch.Generator().manual_seed(self.seed), num_workers=self.cfg.num_workers, pin_memory=self.acc.device.type == "cuda",
                            persistent_workers=False, prefetch_factor=4 if self.cfg.num_workers else None)
        return self.acc.prepare_data_loader(loader, device_placement=True)

    # -- steps ------------------------------------------------------------------------------------------------
    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        with self.acc.autocast():
            inputs = model_inputs(batch)
            if self.shared_teacher is not None:
                t_feats = self.shared_teacher(inputs)
            else:
                cache = self.teacher_caches.get(self.stage.index)
                t_feats = cache(inputs) if cache is not None else None
                if t_feats is None:
                    t_feats = teacher_forward(self.teacher_tap, inference_mode=self.cfg.teacher_inference_mode,
                                              **inputs)
            return self.model(batch, t_feats)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean objective and terms over the held-out blocks (dropout off, fixed masking)."""
        module = self.acc.unwrap_model(self.model)
        module.eval()
        batches = self.held_out_batches(self.cfg.eval_batches)
        n_batches = len(batches)
        sums: dict[str, float] = {}
        for batch in batches:
            with self.acc.autocast():
                t_feats = teacher_forward(self.teacher_tap, **model_inputs(batch))
                loss, terms = module(batch, t_feats)
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        module.train()
        return {k: v / n_batches for k, v in sums.items()}

    def held_out_batches(self, limit: int | None = None) -> list[dict[str, Tensor]]:
        """The current stage's held-out batches as validation sees them (fixed masking), at most ``limit``."""
        valid = torch.as_tensor(self.corpus.valid, dtype=torch.long)
        labels = (None if self.corpus.labels is None
                  else torch.as_tensor(np.asarray(self.corpus.labels[self.corpus.valid_index])))
        bs = self.cfg.batch_size
        n = math.ceil(len(valid) / bs) if limit is None else min(limit, math.ceil(len(valid) / bs))
        out = []
        for b in range(n):
            ids = valid[b * bs:(b + 1) * bs].to(self.acc.device)
            out.append(self._valid_batch(ids, b, None if labels is None else labels[b * bs:(b + 1) * bs].to(ids.device)))
        return out

    def _valid_batch(self, ids: Tensor, b: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        seed, self.batcher.seed = self.batcher.seed, VALID_SEED
        try:
            return self.batcher(ids, position=b, labels=labels)
        finally:
            self.batcher.seed = seed

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``max_steps`` (or until ``stop_after`` steps, for tests); returns final metrics."""
        steps = self.steps(resume=resume, stop_after=stop_after)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def steps(self, *, resume: bool = False, stop_after: int | None = None) -> Generator[int, None, dict[str, Any]]:
        """:meth:`run` one optimizer step at a time: yields the step number after each step and returns the final
        metrics (a cohort, :mod:`bertpress.train.cohort`, advances several distillers in lockstep this way)."""
        cfg, acc = self.cfg, self.acc
        state = self.state = TrainState()
        self.guard.pending.clear()
        ckpt = latest_checkpoint(self.ckpt_root) if resume else None
        if ckpt is not None:
            state = self.state = load_checkpoint(acc, ckpt)
            extra = load_extra(ckpt)
            self.early = BestWeights(state.early, None if extra is None else extra.get("best"))
            if state.precision and state.precision != acc.mixed_precision:
                log.warning("resumed with mixed_precision %s where the run trained with %s (train.mixed_precision: "
                            "auto on another machine?): the result will differ from an uninterrupted run",
                            acc.mixed_precision, state.precision)
        else:
            set_seed(self.seed)
            self.early = BestWeights(state.early)
        state.precision = acc.mixed_precision
        metrics = MetricsLog(self.out_dir, enabled=acc.is_main_process, resume_step=state.step if ckpt else None,
                             tensorboard="tensorboard" in cfg.report_to,
                             forward=(lambda values, step: acc.log(values, step=step)) if acc.trackers else None)
        stage = stage_at(self.stages, state.step)
        self._enter(stage)
        self._stage_start(metrics, state, record=state.step == stage.start)
        if state.step == 0:
            self._evaluate(metrics, 0)
        self.model.train()
        loader = iter(self._loader(self._position(state)))
        bar = tqdm(total=cfg.max_steps, initial=state.step, desc="distilling", unit="step",
                   disable=not acc.is_local_main_process or not bars_enabled(), dynamic_ncols=True)
        window: dict[str, Tensor] = {}  # on-device sums, read (and averaged over processes) only when logged
        window_steps, t_window, window_tokens = 0, time.perf_counter(), state.tokens
        t_start, elapsed0 = time.perf_counter(), state.elapsed
        c_start, cpu0 = time.process_time(), state.cpu
        try:
            while state.step < cfg.max_steps:
                if state.step >= self.stage.end:  # a stage boundary: the next stage starts
                    data = self.stage.data
                    self._enter(stage_at(self.stages, state.step))
                    if self.stage.data != data:
                        loader = iter(self._loader(self._position(state)))
                    self._stage_start(metrics, state)
                skip = False
                step_terms: dict[str, Tensor] = {}
                for micro in range(cfg.grad_accum):
                    item = next(loader)
                    ids, labels = item if isinstance(item, (list, tuple)) else (item, None)
                    batch = self.batcher(ids, position=self._position(state), rank=acc.process_index, labels=labels)
                    batch["position"] = self._position(state)  # what a supernet draws its sub-networks from
                    last = micro == cfg.grad_accum - 1
                    ctx = acc.no_sync(self.model) if not last and acc.num_processes > 1 else nullcontext()
                    with ctx:
                        loss, terms = self._loss(batch)
                        bad = self.guard.skip(state.step + 1, loss, terms)
                        if bad:
                            skip = True
                        else:
                            acc.backward(loss / cfg.grad_accum)
                    if self.stage.data == "labelled":
                        state.labelled_micro_step += 1
                    else:
                        state.micro_step += 1
                    # padded examples (sentence/pair units) count their real tokens; packed blocks have no padding
                    seen = int(batch["attention_mask"].sum()) if self.batcher.trim else batch["input_ids"].numel()
                    state.tokens += seen * acc.num_processes
                    for k, v in {"loss": loss, **terms}.items():
                        step_terms[k] = step_terms.get(k, 0.0) + v.detach().float() / cfg.grad_accum
                if skip:
                    self.optimizer.zero_grad(set_to_none=True)
                    state.skipped_batches += 1
                else:
                    if cfg.max_grad_norm > 0:
                        acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                state.step += 1
                if self.guard.due(state.step, self.stage.end, stop_after):
                    self.guard.check()
                for k, v in step_terms.items():
                    window[k] = window.get(k, 0.0) + v
                window_steps += 1
                bar.update(1)
                logged = None
                if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                    dt = time.perf_counter() - t_window
                    rate = (state.tokens - window_tokens) / max(dt, 1e-9)
                    values = self._mean_over_processes(window, window_steps)
                    values.update(lr=self.scheduler.get_last_lr()[0], tokens=state.tokens, tokens_per_s=rate)
                    metrics.log("train", state.step, values)
                    bar.set_postfix(loss=f"{values['loss']:.4f}", tok_s=f"{rate:,.0f}")
                    window, window_steps, t_window, window_tokens = {}, 0, time.perf_counter(), state.tokens
                    logged = values
                fire(self.callbacks, "on_step_end", self, state.step, logged)
                due = cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < cfg.max_steps
                if due and self._evaluate(metrics, state.step):
                    self._stop_stage(state, bar)
                if state.step == self.stage.end and self.stage.early_stopping:
                    self._finish_stage(metrics, state)
                state.elapsed = elapsed0 + time.perf_counter() - t_start
                state.cpu = cpu0 + time.process_time() - c_start
                boundary = state.step == self.stage.end and state.step < cfg.max_steps
                if cfg.save_every and state.step < cfg.max_steps and (state.step % cfg.save_every == 0 or boundary):
                    path = save_checkpoint(acc, self.ckpt_root, state, cfg.keep_checkpoints,
                                           None if self.early.best is None else {"best": self.early.best})
                    fire(self.callbacks, "on_save", self, state.step, path)
                if stop_after is not None and state.step >= stop_after:
                    break
                yield state.step
        finally:
            bar.close()
        final = self.validate()
        state.elapsed = elapsed0 + time.perf_counter() - t_start
        state.cpu = cpu0 + time.process_time() - c_start
        metrics.log("valid", state.step, final)
        fire(self.callbacks, "on_evaluate", self, state.step, final)
        metrics.close()
        return {"valid": final, "state": asdict(state)}

    def _evaluate(self, metrics: MetricsLog, step: int) -> bool:
        """Validate and log; for a stage with early stopping, keep the best weights. True when the stage has run
        out of patience."""
        values = self.validate()
        metrics.log("valid", step, values)
        fire(self.callbacks, "on_evaluate", self, step, values)
        if not self.stage.early_stopping:
            return False
        return self.early.track(self.stage.name, self.stage.early_stopping, step, values["loss"], self._unwrapped())

    def _stop_stage(self, state: TrainState, bar) -> None:
        """Out of patience: restore the best weights and jump to the end of the stage (the learning-rate schedule
        too, so the next stage starts where it would have)."""
        self.early.stopped(self.stage.name, state.step)
        self.early.restore(self.stage.name, self._unwrapped())
        bar.update(self.stage.end - state.step)
        state.step = self.stage.end
        self.scheduler.last_epoch = state.step - 1
        self.scheduler.step()

    def _finish_stage(self, metrics: MetricsLog, state: TrainState) -> None:
        """The stage ran its steps: validate once more (unless just done) and keep the best weights."""
        if self.early.has_stopped(self.stage.name):
            return
        if self.early.last_validated(self.stage.name) != state.step:
            self._evaluate(metrics, state.step)
        self.early.restore(self.stage.name, self._unwrapped())

    def _position(self, state: TrainState) -> int:
        """Micro-batches the current stage's data has given so far."""
        return state.labelled_micro_step if self.stage.data == "labelled" else state.micro_step

    def _stage_start(self, metrics: MetricsLog, state: TrainState, record: bool = True) -> None:
        """Bookkeeping and callbacks of a stage (re-)entered at ``state.step``; ``record`` logs its start."""
        state.stage = self.stage.index
        if record and len(self.stages) > 1:
            metrics.log("stage", state.step, {"stage": self.stage.index, "name": self.stage.name})
            log.info("stage %d/%d %r: %d steps from step %d", self.stage.index + 1, len(self.stages),
                     self.stage.name, self.stage.steps, state.step)
        fire(self.callbacks, "on_stage_start", self, self.stage)
        if record and self.stage.early_stopping and state.step > 0:  # the stage's starting point is its first best
            self._evaluate(metrics, state.step)

    def _mean_over_processes(self, sums: dict[str, Tensor], steps: int) -> dict[str, float]:
        keys = list(sums)
        stacked = torch.stack([sums[k] for k in keys]) / steps
        if self.acc.num_processes > 1:
            stacked = self.acc.reduce(stacked, reduction="mean")
        return dict(zip(keys, stacked.tolist(), strict=True))

    def _unwrapped(self) -> DistillModule:
        return self.acc.unwrap_model(self.model)

    def student(self) -> PreTrainedModel:
        return self._unwrapped().student
