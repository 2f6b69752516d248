"""The distillation loop: teacher features → student features → objective, on accelerate.

One process, one GPU or many (DDP via ``accelerate launch``), optional mixed precision; AdamW with linear warm-up and
decay, gradient accumulation and clipping, validation at intervals, atomic checkpoints and exact resume.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from bertpress.data.corpus import PackedCorpus
from bertpress.errors import BertpressError
from bertpress.models.anatomy import anatomy
from bertpress.models.features import FeatureRequest, FeatureTap, teacher_forward
from bertpress.models.teacher import Teacher
from bertpress.objectives.base import Objective
from bertpress.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from bertpress.train.data import Batcher, BlockDataset, ResumableBatchSampler
from bertpress.train.metrics import MetricsLog

log = logging.getLogger(__name__)

#: Validation batches are masked with this fixed seed, so every evaluation sees the same inputs.
VALID_SEED = 7919


class DistillModule(nn.Module):
    """The trainable part: the student and the objective's projections; ``forward`` returns (loss, terms)."""

    def __init__(self, student: PreTrainedModel, objective: Objective, request: FeatureRequest,
                 compile_student: bool = False) -> None:
        super().__init__()
        self.student, self.objective = student, objective
        parts = anatomy(student)
        if compile_student:
            # compile the hook-free blocks of every layer (attention output, FFN) in place: LayerNorm, GELU,
            # dropout and residual adds fuse, while the hooked Q/K/V projections stay eager (no graph breaks)
            for layer in parts.layers:
                for block in (layer.attention.output, layer.intermediate, layer.output):
                    block.compile()
        self._tap = FeatureTap(parts, request)

    def forward(self, batch: dict[str, Tensor], teacher_feats) -> tuple[Tensor, dict[str, Tensor]]:
        feats = self._tap(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return self.objective(feats, teacher_feats, batch)


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class Distiller:
    """Runs one distillation; ``run()`` returns the final metrics. Only the main process writes files."""

    def __init__(self, *, teacher: Teacher, student: PreTrainedModel, objective: Objective, corpus: PackedCorpus,
                 tokenizer, train, seed: int, out_dir: Path, mlm_probability: float = 0.15,
                 accelerator: Accelerator | None = None) -> None:
        self.teacher, self.objective, self.corpus, self.cfg, self.seed = teacher, objective, corpus, train, seed
        self.out_dir = Path(out_dir)
        self.acc = accelerator or Accelerator(mixed_precision=train.mixed_precision)
        t_req, s_req = objective.requests()
        self.teacher_tap = FeatureTap(teacher.parts, t_req, truncate=True)
        self.teacher.model.to(self.acc.device)
        self.batcher = Batcher(tokenizer, masking=objective.needs_masking, probability=mlm_probability, seed=seed)
        self.module = DistillModule(student, objective, s_req, compile_student=train.compile)
        self.frozen = self._freeze_unreached()
        if train.freeze_embeddings:
            anatomy(student).embeddings.word_embeddings.requires_grad_(False)
            self.frozen.append("word_embeddings (freeze_embeddings)")
        self.optimizer = torch.optim.AdamW(_param_groups(self.module, train.weight_decay), lr=train.lr,
                                           betas=(0.9, 0.999), eps=1e-6)
        warmup = math.ceil(train.warmup_ratio * train.max_steps)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, train.max_steps)
        self.model, self.optimizer = self.acc.prepare(self.module, self.optimizer)
        self.acc.register_for_checkpointing(self.scheduler)
        self.ckpt_root = self.out_dir / "checkpoints"

    # -- set-up -----------------------------------------------------------------------------------------------
    def _freeze_unreached(self) -> list[str]:
        """Freeze parameters no loss term reaches (e.g. an unused MLM head or the pooler), found by one tiny
        forward/backward, so that DDP and the optimizer only see what trains."""
        ids = torch.tensor(self.corpus.blocks[self.corpus.train_index[0]][:16], dtype=torch.long)[None]
        batch = self.batcher(ids.repeat(2, 1), position=0)
        self.module.train()
        with torch.enable_grad():
            loss, _ = self.module(batch, teacher_forward(self.teacher_tap, **self._inputs(batch)))
            loss.backward()
        frozen = []
        for name, p in self.module.named_parameters():
            if p.requires_grad and p.grad is None:
                p.requires_grad_(False)
                frozen.append(name)
            p.grad = None
        if frozen:
            log.info("not reached by the objective, kept fixed: %d tensors (%s)", len(frozen),
                     ", ".join(sorted({n.split(".")[1] if n.count(".") > 1 else n for n in frozen})))
        return frozen

    @staticmethod
    def _inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def _loader(self, start_micro: int) -> DataLoader:
        n_proc = self.acc.num_processes
        total = self.cfg.max_steps * self.cfg.grad_accum * n_proc
        sampler = ResumableBatchSampler(len(self.corpus.train_index), self.cfg.batch_size, self.seed,
                                        start=start_micro * n_proc, total=total)
        # a generator of its own: starting an iterator draws a base seed, which must not advance the global RNG
        # (dropout's), or a resumed run (restored RNG, then a new iterator) would drop out different units
        loader = DataLoader(BlockDataset(self.corpus.blocks, self.corpus.train_index), batch_sampler=sampler,
                            generator=torch.Generator().manual_seed(self.seed), num_workers=self.cfg.num_workers, pin_memory=self.acc.device.type == "cuda",
                            persistent_workers=False, prefetch_factor=4 if self.cfg.num_workers else None)
        return self.acc.prepare_data_loader(loader, device_placement=True)

    # -- steps ------------------------------------------------------------------------------------------------
    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        with self.acc.autocast():
            t_feats = teacher_forward(self.teacher_tap, inference_mode=self.cfg.teacher_inference_mode,
                                      **self._inputs(batch))
            return self.model(batch, t_feats)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean objective and terms over the held-out blocks (dropout off, fixed masking)."""
        module = self.acc.unwrap_model(self.model)
        module.eval()
        valid = torch.as_tensor(self.corpus.valid, dtype=torch.long)
        bs = self.cfg.batch_size
        n_batches = math.ceil(len(valid) / bs)
        if self.cfg.eval_batches:
            n_batches = min(n_batches, self.cfg.eval_batches)
        sums: dict[str, float] = {}
        for b in range(n_batches):
            ids = valid[b * bs:(b + 1) * bs].to(self.acc.device)
            batch = self._valid_batch(ids, b)
            with self.acc.autocast():
                t_feats = teacher_forward(self.teacher_tap, **self._inputs(batch))
                loss, terms = module(batch, t_feats)
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        module.train()
        return {k: v / n_batches for k, v in sums.items()}

    def _valid_batch(self, ids: Tensor, b: int) -> dict[str, Tensor]:
        seed, self.batcher.seed = self.batcher.seed, VALID_SEED
        try:
            return self.batcher(ids, position=b)
        finally:
            self.batcher.seed = seed

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``max_steps`` (or until ``stop_after`` steps, for tests); returns final metrics."""
        cfg, acc = self.cfg, self.acc
        state = TrainState()
        ckpt = latest_checkpoint(self.ckpt_root) if resume else None
        if ckpt is not None:
            state = load_checkpoint(acc, ckpt)
        else:
            set_seed(self.seed)
        metrics = MetricsLog(self.out_dir, enabled=acc.is_main_process, resume_step=state.step if ckpt else None)
        if state.step == 0:
            metrics.log("valid", 0, self.validate())
        self.model.train()
        loader = iter(self._loader(state.micro_step))
        bar = tqdm(total=cfg.max_steps, initial=state.step, desc="distilling", unit="step",
                   disable=not acc.is_local_main_process, dynamic_ncols=True)
        tokens_per_micro = cfg.batch_size * self.corpus.block_size * acc.num_processes
        window: dict[str, Tensor] = {}  # on-device sums, read (and averaged over processes) only when logged
        window_steps, t_window = 0, time.perf_counter()
        t_start, elapsed0 = time.perf_counter(), state.elapsed
        try:
            while state.step < cfg.max_steps:
                skip = False
                step_terms: dict[str, Tensor] = {}
                for micro in range(cfg.grad_accum):
                    batch = self.batcher(next(loader), position=state.micro_step, rank=acc.process_index)
                    last = micro == cfg.grad_accum - 1
                    ctx = acc.no_sync(self.model) if not last and acc.num_processes > 1 else nullcontext()
                    with ctx:
                        loss, terms = self._loss(batch)
                        bad = self._nonfinite(loss, terms, state)
                        if bad:
                            skip = True
                        else:
                            acc.backward(loss / cfg.grad_accum)
                    state.micro_step += 1
                    state.tokens += tokens_per_micro
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
                for k, v in step_terms.items():
                    window[k] = window.get(k, 0.0) + v
                window_steps += 1
                bar.update(1)
                if state.step % cfg.log_every == 0 or state.step == cfg.max_steps:
                    dt = time.perf_counter() - t_window
                    rate = window_steps * cfg.grad_accum * tokens_per_micro / max(dt, 1e-9)
                    values = self._mean_over_processes(window, window_steps)
                    values.update(lr=self.scheduler.get_last_lr()[0], tokens=state.tokens, tokens_per_s=rate)
                    metrics.log("train", state.step, values)
                    bar.set_postfix(loss=f"{values['loss']:.4f}", tok_s=f"{rate:,.0f}")
                    window, window_steps, t_window = {}, 0, time.perf_counter()
                if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < cfg.max_steps:
                    metrics.log("valid", state.step, self.validate())
                state.elapsed = elapsed0 + time.perf_counter() - t_start
                if cfg.save_every and state.step % cfg.save_every == 0 and state.step < cfg.max_steps:
                    save_checkpoint(acc, self.ckpt_root, state, cfg.keep_checkpoints)
                if stop_after is not None and state.step >= stop_after:
                    break
        finally:
            bar.close()
        final = self.validate()
        state.elapsed = elapsed0 + time.perf_counter() - t_start
        metrics.log("valid", state.step, final)
        metrics.close()
        self.state = state
        return {"valid": final, "state": asdict(state)}

    def _mean_over_processes(self, sums: dict[str, Tensor], steps: int) -> dict[str, float]:
        keys = list(sums)
        stacked = torch.stack([sums[k] for k in keys]) / steps
        if self.acc.num_processes > 1:
            stacked = self.acc.reduce(stacked, reduction="mean")
        return dict(zip(keys, stacked.tolist(), strict=True))

    def _nonfinite(self, loss: Tensor, terms: dict[str, Tensor], state: TrainState) -> bool:
        """True when the loss is NaN/Inf on any process; stops the run unless ``on_nonfinite: skip``."""
        flag = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=self.acc.device)
        if self.acc.num_processes > 1:
            flag = self.acc.reduce(flag, reduction="sum")
        if flag.item() == 0:
            return False
        bad = next((k for k, v in terms.items() if not torch.isfinite(v).item()), "loss")
        if self.cfg.on_nonfinite == "skip":
            log.warning("non-finite loss at step %d (term %r): batch skipped", state.step + 1, bad)
            return True
        last = latest_checkpoint(self.ckpt_root)
        raise BertpressError(
            f"non-finite loss at step {state.step + 1} (term {bad!r} = {float(terms.get(bad, loss).detach())}): lower "
            f"train.lr or check the data; resume from {last or 'the start'} with --resume, or set "
            f"train.on_nonfinite: skip", exit_code=3)

    def student(self) -> PreTrainedModel:
        return self.acc.unwrap_model(self.model).student
