"""Attention scores and probabilities read from the attention kernel itself, in the layers that need them.

Objectives that match attention (TinyBERT's scores or probabilities) need the ``[batch, heads, seq, seq]`` matrices
that fused kernels (SDPA) never materialise. Recomputing them from the captured query and key costs a second
``QKᵀ`` and softmax per mapped layer, forward and backward. Models that dispatch attention through transformers'
``AttentionInterface`` (``_supports_attention_backend``: BERT, RoBERTa, ELECTRA, DistilBERT, ALBERT, ...) are
switched to the ``bertpress`` implementation registered here: layers with a :class:`Capture` slot run the eager
computation once and hand over its scores/probabilities (the ones the layer's output is computed from, before
attention dropout, which is :mod:`bertpress.models.dropout`'s); every other layer calls SDPA as before. Masks are
prepared as for SDPA (boolean, or none when nothing is padded).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from bertpress.models.dropout import dropout as fast_dropout

#: The attention implementation name registered with transformers.
IMPLEMENTATION = "bertpress"
#: Attribute of an attention module that holds its :class:`Capture` list (one per tap on the model).
SLOT = "_bertpress_capture"


@dataclass
class Capture:
    """What one attention module hands over on each forward: ``put(kind, tensor)`` with kind ``scores`` (scaled
    ``QKᵀ`` before the mask) and/or ``probs`` (the masked softmax, before dropout)."""

    put: Callable[[str, Tensor], None]
    scores: bool = False
    probs: bool = False


def capturing_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                        scaling: float | None = None, dropout: float = 0.0, **kwargs) -> tuple[Tensor, None]:
    """``AttentionInterface`` function: eager attention with capture in modules that carry :class:`Capture` slots,
    SDPA everywhere else. ``query/key/value: [batch, heads, seq, head_dim]``; returns ``[batch, seq, heads,
    head_dim]`` like every transformers attention function."""
    captures: list[Capture] | None = getattr(module, SLOT, None)
    if not captures:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(-1, -2)) * scale
    for c in captures:
        if c.scores:
            c.put("scores", scores)
    logits = scores
    if attention_mask is not None:
        logits = (scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
                  if attention_mask.dtype == torch.bool else scores + attention_mask)
    probs = logits.softmax(-1)
    for c in captures:
        if c.probs:
            c.put("probs", probs)
    # in the value's dtype before dropout, as HF's eager attention does (bf16 under autocast: half the bytes)
    out = torch.matmul(fast_dropout(probs.to(value.dtype), dropout, module.training), value)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(IMPLEMENTATION, capturing_attention)
AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)


def head_scores(a: Tensor, b: Tensor, num_heads: int) -> Tensor:
    """Scaled dot products of two ``[batch, seq, D]`` projections split into ``num_heads`` heads:
    ``[batch, heads, seq, seq]`` with ``S_h = A_h B_hᵀ / √(D/heads)`` (``Q``, ``K`` and the model's head count give
    its pre-softmax attention scores)."""
    bsz, seq, dim = a.shape
    d = dim // num_heads
    a = a.view(bsz, seq, num_heads, d).transpose(1, 2)
    b = b.view(bsz, b.shape[1], num_heads, d).transpose(1, 2)
    return torch.matmul(a, b.transpose(-1, -2)) / math.sqrt(d)


def no_padding(mask: Tensor | None) -> bool:
    """Whether nothing is padded: ``mask`` is None, or all ones on CPU (there the check costs no device
    synchronisation; on an accelerator masks are applied as given, which gives the same values)."""
    return mask is None or (mask.device.type == "cpu" and bool(mask.all()))


def masked_probs(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over keys with padded keys (``mask`` 0) excluded, as eager attention computes it."""
    if not no_padding(mask):
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


#: Model types whose attention goes through the interface in the standard form the capturing function reproduces
#: (checked against HF's eager attention in tests/models/test_attention_capture.py). ModernBERT dispatches through
#: it too, but with local-window layers that this function does not reproduce: it stays on the recompute.
CAPTURE_TYPES = frozenset({"bert", "ernie", "roberta", "xlm-roberta", "camembert", "data2vec-text", "electra",
                           "distilbert"})


def supports_capture(model: PreTrainedModel) -> bool:
    """Whether the kernel of ``model`` can hand its attention matrices over."""
    return (getattr(model.config, "model_type", None) in CAPTURE_TYPES
            and bool(getattr(model, "_supports_attention_backend", False)))


def attention_module(projection: nn.Module, model: nn.Module) -> nn.Module:
    """The module that owns ``projection`` (the query or fused QKV linear): the one attention functions receive."""
    for name, module in model.named_modules():
        if module is projection:
            parent, _, _ = name.rpartition(".")
            return model.get_submodule(parent)
    raise ValueError("the projection is not part of the model")
