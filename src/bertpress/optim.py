"""The one parameter-group rule of every bertpress optimizer (distillation, fine-tuning, benchmarks)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def decay_groups(params: Iterable[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices, none on 1-d parameters (biases, LayerNorm scales; BERT's rule)."""
    params = list(params)
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def adamw(groups: list[dict[str, Any]], lr: float, **kwargs: Any) -> torch.optim.AdamW:
    """AdamW on ``groups``, fused (one kernel per step for all parameters) where torch has the kernel for the
    device, else the multi-tensor (``foreach``) implementation."""
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True, **kwargs)
    except RuntimeError:  # no fused kernel for this device in this torch
        return torch.optim.AdamW(groups, lr=lr, foreach=True, **kwargs)
