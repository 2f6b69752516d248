"""``train.average_with_init``: the saved student as a weighted average of its initial and its distilled weights.

Weight-space ensembling of the model a run starts from and the model it ends with (WiSE-FT, Wortsman et al., 2022,
"Robust fine-tuning of zero-shot models", eq. 1: ``θ = (1 - α)·θ_0 + α·θ_1``; here ``share = 1 - α`` is the initial
weights' part). It applies when the student starts from teacher weights (``select``, ``etd-*``, ``pretrained``):
the two ends then lie in one basin, and their average keeps what the copied layers knew that distillation wore
away (in the quality benchmark, CoLA) together with most of what it added (STS-B; ``benchmarks/quality``). The
average is taken once, when the student is saved; training, checkpoints and resume are unchanged.
"""

from __future__ import annotations

import torch


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's floating-point state (the initial weights, taken before training)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if v.is_floating_point()}


@torch.no_grad()
def average_with_init(model: torch.nn.Module, initial: dict[str, torch.Tensor], share: float) -> None:
    """In place: every floating-point tensor of ``model`` becomes ``(1 - share)·current + share·initial`` (computed
    in fp32, stored in the tensor's dtype). Tied tensors are averaged once."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share {share}: must lie in [0, 1]")
    done: set[int] = set()
    for name, t in model.state_dict(keep_vars=True).items():
        if name not in initial or id(t) in done:
            continue
        done.add(id(t))
        mixed = torch.lerp(t.detach().float(), initial[name].to(t.device, torch.float32), share)
        t.data.copy_(mixed.to(t.dtype))
