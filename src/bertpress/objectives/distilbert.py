"""``distilbert``: soft-target cross-entropy + MLM + hidden-state cosine (Sanh et al., 2019), as matches."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bertpress.errors import BertpressError
from bertpress.objectives.base import OBJECTIVES, Objective, ObjectiveContext
from bertpress.objectives.matches import Feature, Match, MatchObjective

log = logging.getLogger(__name__)


class DistilBertOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(2.0, gt=0, description="softmax temperature T of the soft targets")
    alpha_ce: float = Field(5.0, ge=0, description="weight of the soft-target cross-entropy (needs MLM heads)")
    alpha_mlm: float = Field(2.0, ge=0, description="weight of the MLM loss (needs an MLM head)")
    alpha_cos: float = Field(1.0, ge=0, description="weight of the hidden-state cosine loss")
    cosine_layers: Literal["last", "mapping"] = Field(
        "last", description="cosine on the last layer (DistilBERT) or on every mapped layer pair")


def distilbert_matches(options: DistilBertOptions, ctx: ObjectiveContext) -> list[Match]:
    """``L = α_ce·T²·CE(softmax(z_t/T), softmax(z_s/T)) + α_mlm·MLM(z_s, y) + α_cos·Σ (1 − cos(h_s W, h_t))``.

    The logit terms need MLM heads on both models (without them the cosine term trains alone, or an explicitly
    requested logit term is refused); the cosine term uses the last mapped pair by default.
    """
    ce, mlm = options.alpha_ce, options.alpha_mlm
    if not (ctx.teacher_has_head and ctx.student_has_head):
        explicit = {f"alpha_{k}" for k in ("ce", "mlm")} & options.model_fields_set
        if any(getattr(options, f) for f in explicit):
            raise BertpressError(f"objective.{sorted(explicit)[0]} needs a masked-LM head but the teacher has none: set "
                                 "alpha_ce and alpha_mlm to 0, or use a teacher checkpoint with an MLM head")
        if ce or mlm:
            log.warning("teacher has no masked-LM head: distilbert trains with its cosine term only "
                        "(soft-target and MLM terms need MLM heads)")
        ce = mlm = 0.0
    n_s = ctx.student_config.num_hidden_layers
    pairs = list(enumerate(ctx.mapping, start=1)) if options.cosine_layers == "mapping" else [(n_s, ctx.mapping[-1])]
    return [Match(Feature("logits"), Feature("logits"), "soft_cross_entropy", ce, "ce",
                  options={"temperature": options.temperature}),
            Match(Feature("logits"), Feature("labels"), "mlm", mlm, "mlm"),
            *[Match(Feature("hidden", s), Feature("hidden", t), "cosine", options.alpha_cos, "cos", project=True)
              for s, t in pairs]]


@OBJECTIVES.register("distilbert", options=DistilBertOptions)
def build_distilbert(options: DistilBertOptions, ctx: ObjectiveContext) -> Objective:
    """DistilBERT's triple loss: soft targets with temperature, MLM and hidden-state cosine."""
    matches = distilbert_matches(options, ctx)
    masking = any(m.weight for m in matches if m.term in ("ce", "mlm"))  # soft targets are taken on masked input
    return MatchObjective(matches, ctx, needs_masking=masking)
