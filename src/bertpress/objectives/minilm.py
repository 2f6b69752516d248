"""``minilm``: self-attention distribution and value-relation KL on one layer (MiniLM / MiniLMv2)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from bertpress.errors import BertpressError
from bertpress.models.features import FeatureRequest, Features
from bertpress.objectives.base import OBJECTIVES, Objective, ObjectiveContext, default_relation_heads
from bertpress.objectives.losses import relation_kl, relation_logits

#: relation name -> (first projection, second projection)
_RELATIONS = {"attention": ("query", "key"), "value": ("value", "value"),
              "query": ("query", "query"), "key": ("key", "key")}


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


class MiniLMObjective(Objective):
    """``L = Σ_r w_r · KL(softmax(R_t^r) ‖ softmax(R_s^r))`` for relations r ∈ {Q-K, V-V, Q-Q, K-K} of one layer.

    ``R^{ab} = A_h B_hᵀ / √d_r`` over ``relation_heads`` heads (Wang et al., 2020, MiniLM; 2021, MiniLMv2).
    """

    def __init__(self, options: MiniLMOptions, ctx: ObjectiveContext) -> None:
        super().__init__({k: getattr(options, k) for k in _RELATIONS})
        n_t, n_s = ctx.teacher_config.num_hidden_layers, ctx.student_config.num_hidden_layers
        self.t_layer = options.teacher_layer or (ctx.mapping[-1] if ctx.mapping else n_t)
        self.s_layer = options.student_layer or n_s
        if self.t_layer > n_t or self.s_layer > n_s:
            raise BertpressError(
                f"objective.teacher_layer {self.t_layer} / student_layer {self.s_layer} exceed the models' depth "
                f"({n_t} / {n_s}): pick layers within range"
            )
        self.heads = default_relation_heads(ctx, options.relation_heads)

    def _projections(self) -> frozenset[str]:
        return frozenset(p for r in self.weights for p in _RELATIONS[r])

    def requests(self) -> tuple[FeatureRequest, FeatureRequest]:
        used = self._projections()

        def req(layer: int) -> FeatureRequest:
            one = frozenset({layer})
            return FeatureRequest(**{p: one for p in used})

        return req(self.t_layer), req(self.s_layer)

    def terms(self, student: Features, teacher: Features, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch.get("attention_mask")
        out = {}
        for rel in self.weights:
            a, b = _RELATIONS[rel]
            s = relation_logits(getattr(student, a)[self.s_layer], getattr(student, b)[self.s_layer], self.heads)
            t = relation_logits(getattr(teacher, a)[self.t_layer], getattr(teacher, b)[self.t_layer], self.heads)
            out[rel] = relation_kl(s, t, mask)
        return out

    def describe(self) -> dict:
        return {**super().describe(), "pairs": [[self.s_layer, self.t_layer]], "relation_heads": self.heads}


@OBJECTIVES.register("minilm", options=MiniLMOptions)
def build_minilm(options: MiniLMOptions, ctx: ObjectiveContext) -> Objective:
    """MiniLM deep self-attention distillation (attention + value relations), MiniLMv2 relation heads."""
    return MiniLMObjective(options, ctx)
