"""Distillation losses as pure functions of tensors, registered by name.

Conventions: hidden states are ``[batch, seq, dim]``; ``mask`` is the ``[batch, seq]`` attention mask (1 = real
token) and every mean runs over real tokens only; relation/attention logits are ``[batch, heads, seq, seq]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from bertpress.models.attention import head_scores, no_padding
from bertpress.models.pooling import pool as pool_tokens
from bertpress.registry import Registry

LOSSES: Registry[Callable[..., Tensor]] = Registry("loss")
#: 16-bit float dtypes (autocast's): their MSEs run in :class:`_HalfMSE`
HALF = (torch.bfloat16, torch.float16)


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values [batch, seq, ...]`` over real tokens (all elements when ``mask`` is None).

    Weighted sums rather than boolean indexing: no host sync and no gather/scatter in the backward pass.
    """
    if mask is None:
        return values.mean()
    m = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.dim() - 2)))
    per_token = values[0, 0].numel()
    return (values * m).sum() / (m.sum() * per_token).clamp_min(1)


class _HalfMSE(torch.autograd.Function):
    """``mean((s − t)²)`` of two tensors of one 16-bit dtype, summed in fp32 without fp32 copies of either.

    The difference is taken in the 16-bit format, where it is exact when the two values are within a factor of 2
    of each other (Sterbenz's lemma: what a student near its teacher produces) and rounded once otherwise; the
    gradient ``2 (s − t) g / n`` is rounded once to the input dtype, as ``mse_loss`` of fp32 copies rounds it when it
    is cast back. Only the 16-bit difference is kept for the backward; two fp32 copies, an fp32 difference and a cast
    gradient cost about 3x as much on CPU.
    """

    @staticmethod
    def forward(ctx, student: Tensor, teacher: Tensor) -> Tensor:
        diff = student - teacher
        ctx.save_for_backward(diff)
        return diff.float().square().sum() / diff.numel()  # (vector_norm(dtype=fp32) is 4e-4 off: not used)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        (diff,) = ctx.saved_tensors
        g = diff * (2 * grad / diff.numel())  # the 0-dim fp32 factor is applied in fp32, not rounded first
        return (g if ctx.needs_input_grad[0] else None), (-g if ctx.needs_input_grad[1] else None)


def _same_half(a: Tensor, b: Tensor) -> bool:
    """Both tensors of one 16-bit dtype (what autocast hands the losses): :class:`_HalfMSE` applies."""
    return a.dtype == b.dtype and a.dtype in HALF


def _mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean of ``(student − teacher)²`` over all elements in fp32: :class:`_HalfMSE` when both are the same
    16-bit dtype (autocast), else ``F.mse_loss`` of fp32 values."""
    if _same_half(student, teacher):
        return _HalfMSE.apply(student, teacher)
    return F.mse_loss(student.float(), teacher.float())


@LOSSES.register("soft_cross_entropy")
def soft_cross_entropy(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0,
                       mask: Tensor | None = None) -> Tensor:
    """Soft-target cross-entropy with temperature, scaled by T² (Hinton et al., 2015; DistilBERT, Sanh et al., 2019).

    ``L = T² · mean_tokens Σ_v −softmax(z_t/T)_v · log softmax(z_s/T)_v``
    """
    s = student_logits.float() / temperature
    t = teacher_logits.float() / temperature
    ce = -(F.softmax(t, dim=-1) * F.log_softmax(s, dim=-1)).sum(-1)
    return _masked_mean(ce, mask if ce.dim() == 2 else None) * temperature**2  # [batch] for a sequence head


@LOSSES.register("mlm")
def mlm_cross_entropy(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Masked-LM loss: ``L = mean_{i: labels_i ≠ −100} −log softmax(z_i)[labels_i]`` (Devlin et al., 2019)."""
    return F.cross_entropy(student_logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


@LOSSES.register("task_loss")
def task_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """The supervised loss of a task head (what ``transformers``' task models compute): for class labels the
    cross-entropy ``L = mean_{i: y_i ≠ −100} −log softmax(z_i)[y_i]`` over examples (``[batch, classes]`` logits,
    ``[batch]`` labels) or tokens (``[batch, seq, classes]``, ``[batch, seq]``); for float labels (regression, a
    one-output head) ``L = mean_i (z_i − y_i)²``."""
    if labels.is_floating_point():
        return (student_logits.float().reshape(labels.shape) - labels.float()).pow(2).mean()
    return F.cross_entropy(student_logits.reshape(-1, student_logits.shape[-1]).float(), labels.reshape(-1).long(),
                           ignore_index=-100)


@LOSSES.register("logit_mse")
def logit_mse(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """MSE on task logits (XtremeDistil's logit transfer; Mukherjee & Awadallah, ACL 2020, and the authors' code:
    Keras ``mse`` on the teacher's logits): ``L = mean_{i,c} (z^s_{ic} − z^t_{ic})²`` over examples, or over real
    tokens for token-level logits ``[batch, seq, classes]``. The target may be regression labels ``[batch]`` for a
    one-output head (it is reshaped to the student's logits)."""
    diff = (student_logits.float() - teacher_logits.float().reshape(student_logits.shape)).pow(2)
    return _masked_mean(diff, mask) if diff.dim() == 3 else diff.mean()


@LOSSES.register("cosine")
def cosine_loss(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Cosine embedding loss with target 1 (DistilBERT): ``L = mean_tokens (1 − cos(h_s, h_t))``."""
    return _masked_mean(1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1), mask)


@LOSSES.register("mse")
def hidden_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over real tokens and features (TinyBERT, Jiao et al., 2020, eqs. 9-10).

    ``L = mean_{tokens, d} (h_s W − h_t)²`` where any projection ``W`` is applied by the caller.
    """
    if _same_half(student, teacher) and no_padding(mask):
        return _HalfMSE.apply(student, teacher)
    return _masked_mean((student.float() - teacher.float()).pow(2), mask)


def relation_logits(a: Tensor, b: Tensor, num_heads: int) -> Tensor:
    """Scaled dot products between two projections split into ``num_heads`` relation heads (MiniLMv2).

    ``a, b: [batch, seq, D]`` → ``[batch, heads, seq, seq]`` with ``R_h = A_h B_hᵀ / √(D/heads)``. With
    ``a = Q``, ``b = K`` and ``heads`` = the model's head count this is exactly the pre-softmax attention score.
    """
    return head_scores(a, b, num_heads)


def _pair_mask(mask: Tensor | None, ref: Tensor) -> Tensor:
    """``[batch, 1, seq, seq]`` boolean mask of (query, key) pairs that are both real tokens."""
    m = torch.ones(ref.shape[0], ref.shape[-1], dtype=torch.bool, device=ref.device) if mask is None else mask.bool()
    return m[:, None, :, None] & m[:, None, None, :]


@LOSSES.register("attention_mse")
def attention_score_mse(student_scores: Tensor, teacher_scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """MSE between pre-softmax attention scores over real (query, key) pairs (TinyBERT, eq. 7).

    ``L = mean_{h, i, j real} (S^s_{hij} − S^t_{hij})²``
    """
    if no_padding(mask):  # one fused kernel forward and backward
        return _mse(student_scores, teacher_scores)
    sq = (student_scores.float() - teacher_scores.float()).pow(2)
    pair = _pair_mask(mask, student_scores).to(sq.dtype)
    return (sq * pair).sum() / (pair.sum() * sq.shape[1]).clamp_min(1)


@LOSSES.register("relation_kl")
def relation_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL divergence between relation distributions, summed over keys, averaged over heads and real queries.

    ``L = mean_{h, i real} Σ_j p^t_{hij} (log p^t_{hij} − log p^s_{hij})`` with ``p = softmax_j(logits)`` over real
    keys j. Used for MiniLM's self-attention distribution and value-relation transfer (Wang et al., 2020) and
    MiniLMv2's multi-head self-attention relations (Wang et al., 2021).
    """
    pair = _pair_mask(mask, student_logits)
    neg = torch.finfo(torch.float32).min
    s = student_logits.float().masked_fill(~pair, neg)
    t = teacher_logits.float().masked_fill(~pair, neg)
    log_ps, log_pt = F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).masked_fill(~pair, 0.0).sum(-1)  # [batch, heads, seq]
    queries = pair.any(-1).to(kl.dtype)  # [batch, 1, seq]
    return (kl * queries).sum() / (queries.sum() * kl.shape[1]).clamp_min(1)


def _token_moments(h: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token mean and (biased) variance over the features of ``h [batch, seq, dim]``."""
    h = h.float()
    return h.mean(-1), h.var(-1, unbiased=False)


@LOSSES.register("layer_norm_mse")
def layer_norm_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """MSE between hidden states each normalised per token without parameters (MobileBERT's feature-map transfer,
    Sun et al., 2020, eq. 1; the authors' ``run_pretraining.py`` layer-normalises both sides, eps 1e-12).

    ``L = mean_{tokens, d} (LN(h_s) − LN(h_t))²`` with ``LN(h) = (h − μ(h)) / √(σ²(h) + 1e-12)``
    """
    s = F.layer_norm(student.float(), student.shape[-1:], eps=1e-12)
    t = F.layer_norm(teacher.float(), teacher.shape[-1:], eps=1e-12)
    return _masked_mean((s - t).pow(2), mask)


@LOSSES.register("mean_mse")
def hidden_mean_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Squared difference of the per-token feature means (MobileBERT's mean transfer, "beta", Sun et al., 2020).

    ``L = mean_tokens (μ(h_s) − μ(h_t))²``, ``μ(h) = mean_d h_d``
    """
    return _masked_mean((_token_moments(student)[0] - _token_moments(teacher)[0]).pow(2), mask)


@LOSSES.register("variance_l1")
def hidden_variance_l1(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Absolute difference of the per-token feature variances (MobileBERT's variance transfer, "gamma"; the
    authors' ``run_pretraining.py`` takes the absolute difference).

    ``L = mean_tokens |σ²(h_s) − σ²(h_t)|``, ``σ²(h) = mean_d (h_d − μ(h))²``
    """
    return _masked_mean((_token_moments(student)[1] - _token_moments(teacher)[1]).abs(), mask)


def _pooled(h: Tensor, mask: Tensor | None, mode: str, option: str) -> Tensor:
    """``[batch, seq, dim]`` -> one fp32 vector per input: the [CLS] state (``cls``) or the mean over real tokens
    (``mean``; all tokens when ``mask`` is None); ``option`` names the loss argument in the error."""
    if mode not in ("cls", "mean"):
        raise ValueError(f"{option} must be 'cls' or 'mean', not {mode!r}")
    mask = torch.ones(h.shape[:2], device=h.device) if mask is None else mask
    return pool_tokens(h.float(), mask, mode)


@LOSSES.register("pooled_mse")
def pooled_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None, student_pool: str = "cls",
               teacher_pool: str = "mean") -> Tensor:
    """MSE between one pooled vector per input of each side: by default the student's [CLS] state against the
    teacher's mean-pooled sentence embedding, so the position a classification head reads (HF's
    ``*ForSequenceClassification`` pools [CLS]) carries the teacher's sentence embedding (sentence-embedding
    distillation, Reimers & Gurevych, EMNLP 2020, eq. 1, onto the [CLS] position).

    ``L = mean_{b, d} (p_s(h_s)_{bd} − p_t(h_t)_{bd})²`` with ``p`` the [CLS] vector (``cls``) or the mean over
    real tokens (``mean``).
    """
    return F.mse_loss(_pooled(student, mask, student_pool, "student_pool"),
                      _pooled(teacher, mask, teacher_pool, "teacher_pool"))


@LOSSES.register("batch_similarity_mse")
def batch_similarity_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None, pool: str = "cls") -> Tensor:
    """MSE between the batch's sentence-similarity matrices (similarity-preserving distillation, Tung & Mori,
    ICCV 2019, in its cosine form): how the inputs of a batch relate, not where they lie, so it is free of scale,
    works across widths without a projection, and constrains the variation across inputs that a classifier head
    reads.

    ``L = mean_{i,j} (cos(p_s^i, p_s^j) − cos(p_t^i, p_t^j))²`` with ``p`` the [CLS] vector (``pool='cls'``) or
    the mean over real tokens (``pool='mean'``) of each input in the batch.
    """
    s = F.normalize(_pooled(student, mask, pool, "pool"), dim=-1)
    t = F.normalize(_pooled(teacher, mask, pool, "pool"), dim=-1)
    return (s @ s.T - t @ t.T).pow(2).mean()
