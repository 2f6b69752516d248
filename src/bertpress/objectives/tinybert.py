"""``tinybert``: embedding, hidden-state and attention-score MSE along the layer mapping (Jiao et al., 2020)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from bertpress.models.features import FeatureRequest, Features
from bertpress.objectives.base import (
    OBJECTIVES,
    Objective,
    ObjectiveContext,
    default_relation_heads,
    projection,
)
from bertpress.objectives.losses import attention_score_mse, hidden_mse, relation_logits


class TinyBertOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding: float = Field(1.0, ge=0, description="weight of the embedding-output MSE")
    hidden: float = Field(1.0, ge=0, description="weight of the hidden-state MSE, summed over mapped layers")
    attention: float = Field(1.0, ge=0, description="weight of the attention-score MSE, summed over mapped layers")
    relation_heads: int | None = Field(
        None, gt=0, description="heads to compare scores over when teacher and student head counts differ")
    attention_on: Literal["scores", "probabilities"] = Field(
        "scores", description="match pre-softmax scores (TinyBERT) or softmax probabilities (HF 'attentions')")


class TinyBertObjective(Objective):
    """``L = w_e·MSE(E_s W, E_t) + Σ_i [w_h·MSE(H_s^i W, H_t^{m(i)}) + w_a·MSE(A_s^i, A_t^{m(i)})]``.

    ``W`` is one learned projection shared by all layers (identity when widths match); attention scores ``A`` are
    ``QKᵀ/√d`` per head, computed from captured Q/K only for mapped layers (relation heads when head counts differ).
    """

    def __init__(self, options: TinyBertOptions, ctx: ObjectiveContext) -> None:
        super().__init__({"embedding": options.embedding, "hidden": options.hidden, "attention": options.attention})
        self.mapping = list(ctx.mapping)
        self.proj = projection(ctx.student_config.hidden_size, ctx.teacher_config.hidden_size)
        self.heads = default_relation_heads(ctx, options.relation_heads) if "attention" in self.weights else 0
        self.attention_on = options.attention_on

    def requests(self) -> tuple[FeatureRequest, FeatureRequest]:
        s_layers = range(1, len(self.mapping) + 1)
        hidden_t, hidden_s, att_t, att_s = set(), set(), frozenset(), frozenset()
        if "embedding" in self.weights:
            hidden_t.add(0)
            hidden_s.add(0)
        if "hidden" in self.weights:
            hidden_t |= set(self.mapping)
            hidden_s |= set(s_layers)
        if "attention" in self.weights:
            att_t, att_s = frozenset(self.mapping), frozenset(s_layers)
        return (FeatureRequest(hidden=frozenset(hidden_t), query=att_t, key=att_t),
                FeatureRequest(hidden=frozenset(hidden_s), query=att_s, key=att_s))

    def terms(self, student: Features, teacher: Features, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch.get("attention_mask")
        out: dict[str, Tensor] = {}
        if "embedding" in self.weights:
            out["embedding"] = hidden_mse(self.proj(student.hidden[0]), teacher.hidden[0], mask)
        pairs = list(enumerate(self.mapping, start=1))
        if "hidden" in self.weights:
            out["hidden"] = sum(hidden_mse(self.proj(student.hidden[s]), teacher.hidden[t], mask) for s, t in pairs)
        if "attention" in self.weights:
            out["attention"] = sum(
                attention_score_mse(self._attention(student, s, mask), self._attention(teacher, t, mask), mask)
                for s, t in pairs)
        return out

    def _attention(self, feats: Features, layer: int, mask: Tensor | None) -> Tensor:
        scores = relation_logits(feats.query[layer], feats.key[layer], self.heads)
        if self.attention_on == "scores":
            return scores
        if mask is not None:
            scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        return scores.softmax(-1)

    def describe(self) -> dict:
        return {**super().describe(), "pairs": [[0, 0], *[[i, t] for i, t in enumerate(self.mapping, 1)]],
                "attention_heads": self.heads, "attention_on": self.attention_on,
                "projection": not isinstance(self.proj, nn.Identity)}


@OBJECTIVES.register("tinybert", options=TinyBertOptions)
def build_tinybert(options: TinyBertOptions, ctx: ObjectiveContext) -> Objective:
    """TinyBERT general distillation: embedding + hidden MSE (projected) + attention-score MSE."""
    return TinyBertObjective(options, ctx)
