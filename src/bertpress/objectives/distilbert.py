"""``distilbert``: soft-target cross-entropy + MLM + hidden-state cosine (Sanh et al., 2019)."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from bertpress.errors import BertpressError
from bertpress.models.features import FeatureRequest, Features
from bertpress.objectives.base import OBJECTIVES, Objective, ObjectiveContext, projection
from bertpress.objectives.losses import cosine_loss, mlm_cross_entropy, soft_cross_entropy

log = logging.getLogger(__name__)


class DistilBertOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(2.0, gt=0, description="softmax temperature T of the soft targets")
    alpha_ce: float = Field(5.0, ge=0, description="weight of the soft-target cross-entropy (needs MLM heads)")
    alpha_mlm: float = Field(2.0, ge=0, description="weight of the MLM loss (needs an MLM head)")
    alpha_cos: float = Field(1.0, ge=0, description="weight of the hidden-state cosine loss")
    cosine_layers: Literal["last", "mapping"] = Field(
        "last", description="cosine on the last layer (DistilBERT) or on every mapped layer pair")


class DistilBertObjective(Objective):
    """``L = α_ce·T²·CE(softmax(z_t/T), softmax(z_s/T)) + α_mlm·MLM(z_s, y) + α_cos·Σ (1 − cos(h_s W, h_t))``.

    The logit terms need MLM heads on both models; the cosine term uses the last mapped pair by default.
    """

    def __init__(self, options: DistilBertOptions, ctx: ObjectiveContext) -> None:
        heads = ctx.teacher_has_head and ctx.student_has_head
        weights = {"ce": options.alpha_ce, "mlm": options.alpha_mlm, "cos": options.alpha_cos}
        if not heads:
            explicit = {f"alpha_{k}" for k in ("ce", "mlm")} & options.model_fields_set
            if any(getattr(options, f) for f in explicit):
                raise BertpressError(
                    f"objective.{sorted(explicit)[0]} needs a masked-LM head but the teacher has none: set "
                    f"alpha_ce and alpha_mlm to 0, or use a teacher checkpoint with an MLM head"
                )
            if weights["ce"] or weights["mlm"]:
                log.warning("teacher has no masked-LM head: distilbert trains with its cosine term only "
                            "(soft-target and MLM terms need MLM heads)")
            weights.update(ce=0.0, mlm=0.0)
        super().__init__(weights)
        self.temperature = options.temperature
        self.needs_masking = bool(self.weights.keys() & {"ce", "mlm"})
        n_s = ctx.student_config.num_hidden_layers
        pairs = list(enumerate(ctx.mapping, start=1))
        self.pairs = pairs if options.cosine_layers == "mapping" else [(n_s, ctx.mapping[-1])]
        self.proj: nn.Module = projection(ctx.student_config.hidden_size, ctx.teacher_config.hidden_size)

    def requests(self) -> tuple[FeatureRequest, FeatureRequest]:
        logits = bool(self.weights.keys() & {"ce", "mlm"})
        cos = "cos" in self.weights
        t_hidden = frozenset(t for _, t in self.pairs) if cos else frozenset()
        s_hidden = frozenset(s for s, _ in self.pairs) if cos else frozenset()
        return (FeatureRequest(hidden=t_hidden, logits="ce" in self.weights),
                FeatureRequest(hidden=s_hidden, logits=logits))

    def terms(self, student: Features, teacher: Features, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch.get("attention_mask")
        out = {}
        if "ce" in self.weights:
            out["ce"] = soft_cross_entropy(student.logits, teacher.logits, self.temperature, mask)
        if "mlm" in self.weights:
            out["mlm"] = mlm_cross_entropy(student.logits, batch["labels"])
        if "cos" in self.weights:
            out["cos"] = sum(cosine_loss(self.proj(student.hidden[s]), teacher.hidden[t], mask) for s, t in self.pairs)
        return out

    def describe(self) -> dict:
        return {**super().describe(), "temperature": self.temperature, "pairs": [list(p) for p in self.pairs]}


@OBJECTIVES.register("distilbert", options=DistilBertOptions)
def build_distilbert(options: DistilBertOptions, ctx: ObjectiveContext) -> Objective:
    """DistilBERT's triple loss: soft targets with temperature, MLM and hidden-state cosine."""
    return DistilBertObjective(options, ctx)
