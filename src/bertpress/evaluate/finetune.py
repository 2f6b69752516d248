"""The fine-tuning loop: length-grouped batches with dynamic padding, AdamW with linear warmup and decay, seeded.

Features are dicts of model inputs (``input_ids``, ``token_type_ids``) and targets (``labels``, or
``start_positions`` / ``end_positions``), one per example or window, unpadded; batches are padded to their longest
member. The same seed gives the same head initialisation, batch order and dropout masks, so a run is repeatable.

Runs on accelerate: the device of :func:`eval_device`, autocast for ``mixed_precision`` bf16/fp16 (fp16 with
loss scaling), and every process of ``accelerate launch`` / ``torchrun``: each global batch (the settings' batch
size) is split across the processes, DDP averages their gradients, and prediction batches are dealt round-robin
and gathered, so every process ends with all outputs. One CPU process in fp32 computes exactly what the loop did
before accelerate (``tests/evaluate/test_devices.py``).
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import extract_model_from_parallel, gather_object
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from bertpress.errors import BertpressError
from bertpress.optim import adamw, decay_groups
from bertpress.progress import bars_enabled

#: Label value ignored by the loss (sub-word continuations and special tokens in NER).
IGNORE = -100
#: Inputs a model receives from a feature; everything else in a feature is a target.
INPUT_KEYS = ("input_ids", "token_type_ids")
#: Batches are sorted by length inside groups of this many batches, then shuffled (less padding, still random).
GROUP_BATCHES = 50
MAX_GRAD_NORM = 1.0
#: Examples are subsampled with this fixed seed, so every model and every run seed sees the same subset.
SUBSET_SEED = 1234


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fixed_subset(examples: Sequence[Any], cap: int | None) -> list[Any]:
    """``cap`` examples drawn with :data:`SUBSET_SEED` (in their original order), or all of them."""
    if cap is None or cap >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(SUBSET_SEED).choice(len(examples), size=cap, replace=False))
    return [examples[i] for i in keep]


def eval_device() -> torch.device:
    """Where fine-tuning runs: ``$BERTPRESS_DEVICE`` (e.g. ``cpu`` to force it), else the GPU when there is one.
    On the CPU every result is what it was before evaluation learnt devices (tests)."""
    name = os.environ.get("BERTPRESS_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def eval_accelerator(mixed_precision: str = "no") -> Accelerator:
    """The accelerator fine-tuning runs on: :func:`eval_device`, ``mixed_precision`` autocast, all processes."""
    from bertpress.train.run import make_accelerator

    return make_accelerator(mixed_precision, cpu=eval_device().type == "cpu")


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _shard(idx: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This process's part of a global batch (a batch smaller than ``world`` is repeated so no process idles)."""
    return np.resize(idx, max(len(idx), world))[rank::world]


def load_model(model_dir: Path, auto_class: type, **config: Any) -> nn.Module:
    """A task model on top of the encoder in ``model_dir`` (on the CPU until :func:`train` places it); only the
    task head (and pooler) may be new."""
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        model, info = auto_class.from_pretrained(model_dir, output_loading_info=True, **config)
    except (OSError, ValueError, RuntimeError) as e:  # damaged or mismatched weights
        raise BertpressError(f"cannot load {model_dir} ({type(e).__name__}: {str(e).splitlines()[0][:160]}): "
                             "re-download or re-save the model") from None
    prefix = f"{model.base_model_prefix}."
    lost = sorted(k for k in info["missing_keys"] if k.startswith(prefix) and ".pooler." not in k)
    if lost:
        raise BertpressError(f"{model_dir}: {len(lost)} encoder weights are missing from the checkpoint (e.g. "
                             f"{lost[0]}): give a directory written by save_pretrained of a BERT-family encoder")
    return model


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random epoch of batches of similar lengths: shuffle, sort within groups of batches, shuffle batches."""
    order = rng.permutation(len(lengths))
    group = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad list-valued fields to the longest feature (``input_ids`` with ``pad_id``, ``labels`` with
    :data:`IGNORE`, others with 0), stack scalar fields, and add the attention mask."""
    lengths = [len(f["input_ids"]) for f in features]
    width = max(lengths)
    out = {}
    for key, first in features[0].items():
        values = [f[key] for f in features]
        if isinstance(first, list):
            fill = pad_id if key == "input_ids" else IGNORE if key == "labels" else 0
            out[key] = torch.tensor([v + [fill] * (width - len(v)) for v in values])
        else:
            out[key] = torch.tensor(values)
    out["attention_mask"] = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return out


def _optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW without decay on biases and LayerNorm weights (1-d parameters); fused where torch supports it."""
    groups = decay_groups((p for p in model.parameters() if p.requires_grad), weight_decay)
    return adamw(groups, lr)


def train(model: nn.Module, features: Sequence[dict[str, Any]], *, lr: float, epochs: float, batch_size: int,
          warmup_ratio: float, weight_decay: float, seed: int, pad_id: int, desc: str = "fine-tuning",
          progress: bool = True, accelerator: Accelerator | None = None) -> tuple[nn.Module, dict[str, float]]:
    """Fine-tune ``model`` for ``epochs`` passes (the last one partial for fractional epochs) on ``accelerator``
    (default: :func:`eval_accelerator` in fp32); returns the prepared model (DDP-wrapped across processes, autocast
    in mixed precision) and the run's statistics (wall and this process's CPU seconds, tokens of the global batches)."""
    if not features:
        raise BertpressError(f"{desc}: no training examples: check the task data and max_train_examples")
    acc = accelerator or eval_accelerator()
    rank, world = acc.process_index, acc.num_processes
    rng = np.random.default_rng(seed)
    lengths = np.array([len(f["input_ids"]) for f in features])
    total = max(1, math.ceil(epochs * math.ceil(len(features) / batch_size)))
    model, optimizer = acc.prepare(model, _optimizer(model, lr, weight_decay))
    schedule = get_linear_schedule_with_warmup(optimizer.optimizer, int(warmup_ratio * total), total)
    model.train()
    start, cpu, step, tokens, smooth = time.perf_counter(), time.process_time(), 0, 0, float("nan")
    bar = tqdm(total=total, desc=desc, unit="step", disable=not (progress and bars_enabled() and acc.is_main_process),
               mininterval=5, leave=False)
    while step < total:
        for idx in length_grouped_batches(lengths, batch_size, rng):
            local = _shard(idx, rank, world)
            tokens += int(lengths[idx].sum())
            loss = model(**_to(collate([features[i] for i in local], pad_id), acc.device)).loss
            # the global batch's loss: every process sees the same value, so all stop together on a bad one
            seen = acc.reduce(loss.detach(), reduction="mean") if world > 1 else loss.detach()
            if not torch.isfinite(seen):
                raise BertpressError(f"{desc}: the loss became {seen.item()} at step {step + 1}: lower the "
                                     "learning rate (--set lr=...)")
            acc.backward(loss)
            acc.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            smooth = seen.item() if math.isnan(smooth) else 0.98 * smooth + 0.02 * seen.item()
            bar.update()
            bar.set_postfix(loss=f"{smooth:.4f}", refresh=False)
            if step == total:
                break
    bar.close()
    return model, {"steps": step, "train_seconds": time.perf_counter() - start,
                   "train_cpu_seconds": time.process_time() - cpu, "train_tokens": tokens, "final_loss": smooth}


@torch.inference_mode()
def predict(model: nn.Module, features: Sequence[dict[str, Any]], *, batch_size: int, pad_id: int,
            outputs: Sequence[str] = ("logits",), token_level: bool = False, desc: str = "evaluating",
            progress: bool = True) -> dict[str, list[np.ndarray]]:
    """Model outputs per feature, in feature order (token-level outputs cut to each feature's length). Across
    processes each takes every ``world``-th batch and all end with every output; a model prepared with autocast
    (:func:`train`) predicts in its precision."""
    from bertpress.train.run import process_state

    state = process_state()
    model = extract_model_from_parallel(model)  # no DDP collectives: processes run different numbers of batches
    model.eval()
    device = next(model.parameters()).device
    lengths = np.array([len(f["input_ids"]) for f in features])
    order = np.argsort(-lengths, kind="stable")
    local: dict[str, list[tuple[int, np.ndarray]]] = {name: [] for name in outputs}
    starts = range(state.process_index * batch_size, len(order), state.num_processes * batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not (progress and bars_enabled() and state.is_main_process),
                      mininterval=5, leave=False):
        idx = order[start:start + batch_size]
        batch = collate([{k: features[i][k] for k in INPUT_KEYS if k in features[i]} for i in idx], pad_id)
        result = model(**_to(batch, device))
        for name in outputs:
            values = result[name].float().cpu().numpy()
            local[name] += [(int(i), values[row, :lengths[i]] if token_level else values[row]) for row, i in enumerate(idx)]
    out: dict[str, list[np.ndarray]] = {name: [np.empty(0)] * len(features) for name in outputs}
    for name in outputs:
        for i, value in (gather_object(local[name]) if state.num_processes > 1 else local[name]):
            out[name][i] = value
    return out
