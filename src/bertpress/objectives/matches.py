"""Objectives as match lists: each match wires one student feature and one teacher feature to a registered loss.

A match is ``(student feature, teacher feature, loss name, weight, projection)`` (TextBrewer's ``IntermediateMatch``
as data). Features are named ``hidden:N`` (hidden state N; 0 = embedding output), ``attention_scores:N`` /
``attention_probs:N`` (layer N's pre-softmax scores / softmax probabilities: from its attention kernel when the
relation heads are the model's own, see :mod:`bertpress.models.features`, else from the captured Q and K),
``relation_qk:N``, ``relation_vv:N``, ``relation_qq:N``, ``relation_kk:N`` (MiniLM's relation logits of layer N),
``logits`` (MLM logits) and, on the teacher side only, ``labels`` (the masked-LM labels of the batch). Loss names
are resolved in :data:`~bertpress.objectives.losses.LOSSES`. Matches with the same ``term`` are summed into one
logged term with one weight; the objective is ``Σ_term w_term · Σ_{m ∈ term} loss_m``.

``tinybert``, ``minilm`` and ``distilbert`` are presets that expand into matches; ``name: matches`` takes a list
written in the recipe. The expanded matches are written to the run's ``bertpress.json``.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import Tensor

from bertpress.errors import BertpressError
from bertpress.models.attention import masked_probs
from bertpress.models.features import FeatureRequest, Features
from bertpress.objectives.base import (
    OBJECTIVES,
    Objective,
    ObjectiveContext,
    default_relation_heads,
    projection,
    selection_projection_,
)
from bertpress.objectives.losses import LOSSES, relation_logits

_FEATURE = re.compile(r"^(hidden|attention_scores|attention_probs|relation_qk|relation_vv|relation_qq|relation_kk)"
                      r":(\d+)$|^(logits|labels)$")
#: attention/relation feature -> the two captured projections it is computed from
_PAIRS = {"attention_scores": ("query", "key"), "attention_probs": ("query", "key"), "relation_qk": ("query", "key"),
          "relation_vv": ("value", "value"), "relation_qq": ("query", "query"), "relation_kk": ("key", "key")}
#: the layer's own attention matrix (all its heads) -> the Features field the tap fills
_ATTENTION = {"attention_scores": "scores", "attention_probs": "probs"}
FEATURE_HELP = ("hidden:N, attention_scores:N, attention_probs:N, relation_qk:N, relation_vv:N, relation_qq:N, "
                "relation_kk:N, logits, or (teacher only) labels")


@dataclass(frozen=True)
class Feature:
    """A named feature of one model: ``kind`` and 1-based ``layer`` (0 = embedding output; None for logits/labels)."""

    kind: str
    layer: int | None = None

    @classmethod
    def parse(cls, text: str) -> Feature:
        m = _FEATURE.match(text.strip())
        if m is None:
            raise ValueError(f"unknown feature {text!r}: use {FEATURE_HELP}")
        if m.group(3):
            return cls(m.group(3))
        kind, layer = m.group(1), int(m.group(2))
        if layer == 0 and kind != "hidden":
            raise ValueError(f"feature {text!r}: layer 0 is the embedding output, which has only hidden:0")
        return cls(kind, layer)

    def __str__(self) -> str:
        return self.kind if self.layer is None else f"{self.kind}:{self.layer}"

    @property
    def relational(self) -> bool:
        return self.kind in _PAIRS


def extract(feats: Features, feature: Feature, heads: int, mask: Tensor | None,
            batch: dict[str, Tensor]) -> Tensor:
    """The tensor of ``feature`` from captured ``feats`` (relation logits over ``heads`` heads; masked softmax for
    ``attention_probs``, exactly HF's eager ``attentions`` when ``heads`` is the model's head count, in which case
    the tap captured them whole)."""
    if feature.kind == "hidden":
        return feats.hidden[feature.layer]
    if feature.kind == "logits":
        return feats.logits
    if feature.kind == "labels":
        return batch["labels"]
    if feature.kind in _ATTENTION:
        captured = getattr(feats, _ATTENTION[feature.kind]).get(feature.layer)
        if captured is not None and captured.shape[1] == heads:
            return captured
    a, b = _PAIRS[feature.kind]
    scores = relation_logits(getattr(feats, a)[feature.layer], getattr(feats, b)[feature.layer], heads)
    return masked_probs(scores, mask) if feature.kind == "attention_probs" else scores


@dataclass(frozen=True)
class Match:
    """One resolved match. ``project``: the student's hidden feature goes through the objective's learned
    projection (one ``W`` shared by every projected match, identity when the widths agree). ``teacher_heads``: the
    teacher's attention is taken over its own heads and these are kept, in the student's head order (an extracted
    student's heads matched with the teacher heads they came from, :meth:`MatchObjective.align_heads`)."""

    student: Feature
    teacher: Feature
    loss: str
    weight: float
    term: str
    project: bool = False
    heads: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    teacher_heads: tuple[int, ...] = ()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"student": str(self.student), "teacher": str(self.teacher), "loss": self.loss,
                               "weight": self.weight, "term": self.term}
        if self.project:
            out["projection"] = True
        if self.heads:
            out["heads"] = self.heads
        if self.options:
            out["options"] = dict(self.options)
        if self.teacher_heads:
            out["teacher_heads"] = list(self.teacher_heads)
        return out


def _request(features: list[tuple[Feature, int]], model_heads: int) -> FeatureRequest:
    """What to capture for ``(feature, relation heads)`` pairs of a model with ``model_heads`` heads: a layer's
    attention over its own heads whole (from the kernel), other relations from the projections."""
    sets: dict[str, set[int]] = {"hidden": set(), "query": set(), "key": set(), "value": set(), "scores": set(),
                                 "probs": set()}
    logits = False
    for f, heads in features:
        if f.kind == "hidden":
            sets["hidden"].add(f.layer)
        elif f.kind in _ATTENTION and heads == model_heads:
            sets[_ATTENTION[f.kind]].add(f.layer)
        elif f.relational:
            for p in _PAIRS[f.kind]:
                sets[p].add(f.layer)
        elif f.kind == "logits":
            logits = True
    return FeatureRequest(**{k: frozenset(v) for k, v in sets.items()}, logits=logits)


class MatchObjective(Objective):
    """``L = Σ_term w_term · Σ_{m ∈ term} loss_m(f_s(m), f_t(m))`` over a list of :class:`Match` (zero weights
    dropped); ``needs_masking`` when the batch must be MLM-masked (a match reads ``labels``, or a preset says so)."""

    def __init__(self, matches: list[Match], ctx: ObjectiveContext, *, needs_masking: bool | None = None) -> None:
        weights: dict[str, float] = {}
        for m in matches:
            if weights.setdefault(m.term, m.weight) != m.weight:
                raise BertpressError(f"term {m.term!r} has matches with weights {weights[m.term]} and {m.weight}: "
                                     "give them one weight, or different term names")
        super().__init__(weights)
        self.matches = [m for m in matches if m.weight]
        self._check_layers(ctx)
        self._heads = (ctx.teacher_config.num_attention_heads, ctx.student_config.num_attention_heads)
        projected = any(m.project for m in self.matches)
        self.proj = (projection(ctx.student_config.hidden_size, ctx.teacher_config.hidden_size) if projected
                     else torch.nn.Identity())
        self.needs_masking = (any(m.teacher.kind == "labels" for m in self.matches) if needs_masking is None
                              else needs_masking)
        # each loss resolved once: (function, whether it takes the attention mask)
        self._losses = {m.loss: (fn, "mask" in inspect.signature(fn).parameters)
                        for m in self.matches for fn in [LOSSES.get(m.loss).fn]}

    def align_projection(self, hidden_dims: list[int]) -> bool:
        if not isinstance(self.proj, torch.nn.Linear):
            return False
        selection_projection_(self.proj, hidden_dims)
        return True

    def align_heads(self, layers: list[int], heads: list[list[int]]) -> bool:
        """Match each attention head of an extracted student with the teacher head it was extracted from.

        ``layers[i]`` (1-based) and ``heads[i]`` are the teacher layer and heads student layer ``i + 1`` came from
        (:class:`~bertpress.init.extract.ExtractionPlan`). An attention match whose teacher layer is that layer and
        whose student heads are one teacher head each then compares student head ``j`` with teacher head
        ``heads[i][j]``, both from their kernels, instead of both sides' Q/K regrouped into the shared relation-head
        count (which, with 8 student and 12 teacher heads, compares each student head with a mix of one and a half
        teacher heads). False when no match changed.
        """
        n_t, n_s = self._heads
        changed = False
        for k, m in enumerate(self.matches):
            if m.student.kind not in _ATTENTION or m.teacher.kind != m.student.kind:
                continue
            i = m.student.layer - 1
            if i >= len(layers) or layers[i] != m.teacher.layer or len(heads[i]) != n_s:
                continue
            kept = tuple(int(h) for h in heads[i])
            if kept == tuple(range(n_t)) and m.heads == n_t:  # already the teacher's own heads, in order
                continue
            self.matches[k] = replace(m, heads=n_s, teacher_heads=kept)
            changed = True
        return changed

    def _check_layers(self, ctx: ObjectiveContext) -> None:
        for m in self.matches:
            for side, f, cfg in (("student", m.student, ctx.student_config), ("teacher", m.teacher, ctx.teacher_config)):
                if f.layer is not None and f.layer > cfg.num_hidden_layers:
                    raise BertpressError(f"match {m.student} -> {m.teacher}: the {side} has {cfg.num_hidden_layers} "
                                         f"layers, not {f.layer}: name a layer within range")

    def requests(self) -> tuple[FeatureRequest, FeatureRequest]:
        return (_request([(m.teacher, self._heads[0] if m.teacher_heads else m.heads) for m in self.matches],
                         self._heads[0]),
                _request([(m.student, m.heads) for m in self.matches], self._heads[1]))

    def terms(self, student: Features, teacher: Features, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch.get("attention_mask")
        if mask is not None and bool(mask.all()):  # packed blocks: no padding, so no [B, H, L, L] masking work
            mask = None
        out: dict[str, Tensor] = {}
        for m in self.matches:
            s = extract(student, m.student, m.heads, mask, batch)
            if m.project:
                s = self.proj(s)
            if m.teacher_heads:
                t = extract(teacher, m.teacher, self._heads[0], mask, batch)[:, list(m.teacher_heads)]
            else:
                t = extract(teacher, m.teacher, m.heads, mask, batch)
            fn, takes_mask = self._losses[m.loss]
            value = fn(s, t, mask=mask, **m.options) if takes_mask else fn(s, t, **m.options)
            out[m.term] = out[m.term] + value if m.term in out else value
        return out

    def describe(self) -> dict:
        return {**super().describe(), "matches": [m.describe() for m in self.matches],
                "projection": not isinstance(self.proj, torch.nn.Identity)}


# -- matches written in a recipe ---------------------------------------------------------------------------------


class MatchSpec(BaseModel):
    """One match as written in a recipe (``objective: {name: matches, matches: [...]}``)."""

    model_config = ConfigDict(extra="forbid")
    student: str = Field(description="student feature: " + FEATURE_HELP)
    teacher: str = Field(description="teacher feature (same names)")
    loss: str = Field(description="loss name: " + ", ".join(LOSSES.names()))
    weight: float = Field(1.0, ge=0, description="weight of the match's term")
    term: str | None = Field(None, description="logged term it is summed into (default: loss:student)")
    projection: bool = Field(True, description="learn a projection when a hidden feature's widths differ")
    heads: int | None = Field(None, gt=0, description="relation heads of attention/relation features (default: "
                                                      "the shared head count)")
    options: dict[str, Any] = Field(default_factory=dict, description="extra loss arguments, e.g. temperature")

    @field_validator("student", "teacher")
    @classmethod
    def _feature(cls, v: str) -> str:
        Feature.parse(v)
        return v

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str) -> str:
        if v not in LOSSES:
            raise ValueError(f"unknown loss {v!r}: choose one of {', '.join(LOSSES.names())}")
        return v

    @model_validator(mode="after")
    def _sides(self) -> MatchSpec:
        s, t = Feature.parse(self.student), Feature.parse(self.teacher)
        if s.kind == "labels":
            raise ValueError("labels are a teacher-side feature (the batch's MLM labels): match student logits to them")
        if (s.kind == "hidden") != (t.kind == "hidden") or s.relational != t.relational:
            raise ValueError(f"match {self.student} -> {self.teacher}: the two features are of different kinds")
        return self


class MatchesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matches: list[MatchSpec] = Field(min_length=1, description="the matches (see docs/stages.md)")
    masking: bool | None = Field(None, description="MLM-mask the batch (default: when a match reads labels)")


def resolve_matches(specs: list[MatchSpec], ctx: ObjectiveContext) -> list[Match]:
    """Recipe matches with their defaults filled in (term names, relation heads)."""
    out = []
    for spec in specs:
        s, t = Feature.parse(spec.student), Feature.parse(spec.teacher)
        heads = default_relation_heads(ctx, spec.heads) if s.relational else 0
        out.append(Match(s, t, spec.loss, spec.weight, spec.term or f"{spec.loss}:{s}",
                         spec.projection and s.kind == "hidden", heads, dict(spec.options)))
    return out


@OBJECTIVES.register("matches", options=MatchesOptions)
def build_matches(options: MatchesOptions, ctx: ObjectiveContext) -> Objective:
    """A list of matches written in the recipe (student feature, teacher feature, loss, weight, projection)."""
    return MatchObjective(resolve_matches(options.matches, ctx), ctx, needs_masking=options.masking)
