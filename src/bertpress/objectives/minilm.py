"""``minilm``: self-attention distribution and value-relation KL on one layer (MiniLM / MiniLMv2), as matches."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bertpress.errors import BertpressError
from bertpress.objectives.base import OBJECTIVES, Objective, ObjectiveContext, default_relation_heads
from bertpress.objectives.matches import Feature, Match, MatchObjective

#: option (term) name -> relation feature
_RELATIONS = {"attention": "relation_qk", "value": "relation_vv", "query": "relation_qq", "key": "relation_kk"}


class MiniLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teacher_layer: int | None = Field(None, ge=1, description="1-based teacher layer to distil (default: last)")
    student_layer: int | None = Field(None, ge=1, description="1-based student layer that learns it (default: last)")
    attention: float = Field(1.0, ge=0, description="weight of the Q-K attention-distribution KL (MiniLM)")
    value: float = Field(1.0, ge=0, description="weight of the V-V value-relation KL (MiniLM)")
    query: float = Field(0.0, ge=0, description="weight of the Q-Q relation KL (MiniLMv2)")
    key: float = Field(0.0, ge=0, description="weight of the K-K relation KL (MiniLMv2)")
    relation_heads: int | None = Field(
        None, gt=0, description="relation heads (MiniLMv2); default the shared head count, so head counts may differ")


def minilm_matches(options: MiniLMOptions, ctx: ObjectiveContext) -> list[Match]:
    """``L = Σ_r w_r · KL(softmax(R_t^r) ‖ softmax(R_s^r))`` for relations r ∈ {Q-K, V-V, Q-Q, K-K} of one layer.

    ``R^{ab} = A_h B_hᵀ / √d_r`` over ``relation_heads`` heads (Wang et al., 2020, MiniLM; 2021, MiniLMv2).
    """
    n_t, n_s = ctx.teacher_config.num_hidden_layers, ctx.student_config.num_hidden_layers
    t_layer = options.teacher_layer or (ctx.mapping[-1] if ctx.mapping else n_t)
    s_layer = options.student_layer or n_s
    if t_layer > n_t or s_layer > n_s:
        raise BertpressError(f"objective.teacher_layer {t_layer} / student_layer {s_layer} exceed the models' depth "
                             f"({n_t} / {n_s}): pick layers within range")
    heads = default_relation_heads(ctx, options.relation_heads)
    return [Match(Feature(rel, s_layer), Feature(rel, t_layer), "relation_kl", getattr(options, term), term,
                  heads=heads) for term, rel in _RELATIONS.items()]


@OBJECTIVES.register("minilm", options=MiniLMOptions)
def build_minilm(options: MiniLMOptions, ctx: ObjectiveContext) -> Objective:
    """MiniLM deep self-attention distillation (attention + value relations), MiniLMv2 relation heads."""
    return MatchObjective(minilm_matches(options, ctx), ctx)
