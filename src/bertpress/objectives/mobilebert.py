"""``mobilebert``: MobileBERT's layer-wise knowledge transfer (Sun et al., ACL 2020), as matches.

Per mapped layer pair: the feature-map MSE on parameter-free layer-normalised hidden states, the attention
distribution KL (teacher softmax ‖ student softmax over keys, the authors' cross-entropy less the teacher's
constant entropy), and the mean and variance transfer terms. Default weights are the authors' flags for progressive
transfer (google-research/mobilebert README: ``hidden_distill_factor=100``, ``attention_distill_factor=1``,
``beta_distill_factor=5000``, ``gamma_distill_factor=5``); like the authors' code every term is averaged over the
layers (factor / number of layers per layer). Differences from that code: real tokens only (it averages padding
too), and the mean term compares layer i with layer i (its teacher side averages over all layers). Run it layer by
layer with ``schedule: {name: progressive}`` (docs/stages.md), the paper's progressive knowledge transfer.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bertpress.objectives.base import OBJECTIVES, Objective, ObjectiveContext, default_relation_heads
from bertpress.objectives.matches import Feature, Match, MatchObjective


class MobileBertObjectiveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature: float = Field(100.0, ge=0, description="weight of the layer-normalised feature-map MSE (authors: 100)")
    attention: float = Field(1.0, ge=0, description="weight of the attention-distribution KL (authors: 1)")
    mean: float = Field(5000.0, ge=0, description="weight of the per-token mean transfer (authors: 5000)")
    variance: float = Field(5.0, ge=0, description="weight of the per-token variance transfer (authors: 5)")
    relation_heads: int | None = Field(
        None, gt=0, description="heads to compare attention over when teacher and student head counts differ")


def mobilebert_matches(options: MobileBertObjectiveOptions, ctx: ObjectiveContext) -> list[Match]:
    """``L = 1/L_s Σ_i [w_f·MSE(LN(H_s^i W), LN(H_t^{m(i)})) + w_a·KL(A_t^{m(i)} ‖ A_s^i)
    + w_μ·(μ_s^i − μ_t^{m(i)})² + w_σ·|σ²_s^i − σ²_t^{m(i)}|]`` over the mapped layers (``W``: a learned projection
    when the block width differs from the teacher's, identity otherwise)."""
    pairs = list(enumerate(ctx.mapping, start=1))
    n = max(1, len(pairs))
    heads = default_relation_heads(ctx, options.relation_heads) if options.attention else 0
    out = []
    for s, t in pairs:
        hs, ht = Feature("hidden", s), Feature("hidden", t)
        out += [Match(hs, ht, "layer_norm_mse", options.feature / n, "feature", project=True),
                Match(Feature("attention_scores", s), Feature("attention_scores", t), "relation_kl",
                      options.attention / n, "attention", heads=heads),
                Match(hs, ht, "mean_mse", options.mean / n, "mean", project=True),
                Match(hs, ht, "variance_l1", options.variance / n, "variance", project=True)]
    return out


@OBJECTIVES.register("mobilebert", options=MobileBertObjectiveOptions)
def build_mobilebert(options: MobileBertObjectiveOptions, ctx: ObjectiveContext) -> Objective:
    """MobileBERT layer-wise transfer: LayerNorm-ed feature maps, attention KL, mean and variance (Sun et al.)."""
    return MatchObjective(mobilebert_matches(options, ctx), ctx)
