"""``tinybert``: embedding, hidden-state and attention MSE along the layer mapping (Jiao et al., 2020), as matches."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bertpress.objectives.base import OBJECTIVES, Objective, ObjectiveContext, default_relation_heads
from bertpress.objectives.matches import Feature, Match, MatchObjective


class TinyBertOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding: float = Field(1.0, ge=0, description="weight of the embedding-output MSE")
    hidden: float = Field(1.0, ge=0, description="weight of the hidden-state MSE, summed over mapped layers")
    attention: float = Field(1.0, ge=0, description="weight of the attention-score MSE, summed over mapped layers")
    relation_heads: int | None = Field(
        None, gt=0, description="heads to compare scores over when teacher and student head counts differ")
    attention_on: Literal["scores", "probabilities"] = Field(
        "scores", description="match pre-softmax scores (TinyBERT) or softmax probabilities (HF 'attentions')")
    hidden_loss: Literal["mse", "cosine", "layer_norm_mse"] = Field(
        "mse", description="loss of the embedding and hidden-state matches: MSE (TinyBERT), or a scale-free one, "
                           "which does not shrink the student's states towards the mean (benchmarks/quality/"
                           "shrinkage.py): cosine (DistilBERT's) or per-token layer-normalised MSE (MobileBERT's)")


def tinybert_matches(options: TinyBertOptions, ctx: ObjectiveContext) -> list[Match]:
    """``L = w_e·D(E_s W, E_t) + Σ_i [w_h·D(H_s^i W, H_t^{m(i)}) + w_a·MSE(A_s^i, A_t^{m(i)})]``.

    ``D`` is MSE (TinyBERT) or ``hidden_loss``; ``W`` is one learned projection shared by all layers (identity when
    widths match); attention ``A`` is ``QKᵀ/√d`` per head (or its softmax), from captured Q/K of mapped layers only
    (relation heads when head counts differ).
    """
    pairs = list(enumerate(ctx.mapping, start=1))
    heads = default_relation_heads(ctx, options.relation_heads) if options.attention else 0
    att = "attention_scores" if options.attention_on == "scores" else "attention_probs"
    d = options.hidden_loss
    return [Match(Feature("hidden", 0), Feature("hidden", 0), d, options.embedding, "embedding", project=True),
            *[Match(Feature("hidden", s), Feature("hidden", t), d, options.hidden, "hidden", project=True)
              for s, t in pairs],
            *[Match(Feature(att, s), Feature(att, t), "attention_mse", options.attention, "attention", heads=heads)
              for s, t in pairs]]


@OBJECTIVES.register("tinybert", options=TinyBertOptions)
def build_tinybert(options: TinyBertOptions, ctx: ObjectiveContext) -> Objective:
    """TinyBERT general distillation: embedding + hidden MSE (projected) + attention-score MSE."""
    return MatchObjective(tinybert_matches(options, ctx), ctx)
