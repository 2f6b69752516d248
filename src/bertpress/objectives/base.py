"""The objective interface: a weighted sum of loss terms over a layer mapping, and its registry."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from bertpress.errors import BertpressError
from bertpress.models.features import FeatureRequest, Features
from bertpress.registry import Registry

if TYPE_CHECKING:
    from transformers import PretrainedConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective is built for: both configs, the layer mapping and which models have MLM heads."""

    teacher_config: PretrainedConfig
    student_config: PretrainedConfig
    mapping: list[int]
    teacher_has_head: bool
    student_has_head: bool


class Objective(nn.Module, ABC):
    """Computes ``(total, {term: value})`` from student and teacher features.

    Subclasses declare what they read (:meth:`requests`) so that only those features are captured and the teacher
    runs only as deep as needed; learned projections live on the objective and train with the student.
    """

    #: whether the batch must be MLM-masked (an MLM loss is used); the loop then provides ``labels``.
    needs_masking: bool = False

    def __init__(self, weights: dict[str, float]) -> None:
        super().__init__()
        self.weights = {k: float(w) for k, w in weights.items() if w}
        if not self.weights:
            raise BertpressError(f"objective {type(self).__name__} has every weight at 0: give at least one term a weight")

    @abstractmethod
    def requests(self) -> tuple[FeatureRequest, FeatureRequest]:
        """(teacher request, student request)."""

    @abstractmethod
    def terms(self, student: Features, teacher: Features, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Unweighted loss terms, one per positive weight."""

    def describe(self) -> dict:
        """JSON description of what is matched (written to the run's output)."""
        return {"weights": self.weights}

    def align_projection(self, hidden_dims: list[int]) -> bool:
        """Start the learned projection as :func:`selection_projection_` of ``hidden_dims``; False when this
        objective learns no projection (the default)."""
        return False

    def align_heads(self, layers: list[int], heads: list[list[int]]) -> bool:
        """Compare each extracted student head's attention with the teacher head it came from (``layers[i]``,
        ``heads[i]``: what student layer ``i + 1`` was extracted from); False when nothing changed (the default)."""
        return False

    def forward(self, student: Features, teacher: Features, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        terms = self.terms(student, teacher, batch)
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, terms


ObjectiveBuilder = Callable[[BaseModel, ObjectiveContext], Objective]
OBJECTIVES: Registry[ObjectiveBuilder] = Registry("objective")


def projection(student_dim: int, teacher_dim: int) -> nn.Module:
    """TinyBERT's learned ``W`` mapping student width to teacher width (identity when widths match)."""
    return nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)


def selection_projection_(proj: nn.Linear, hidden_dims: list[int]) -> None:
    """Set ``W`` (teacher width x student width) to place student dim ``j`` on teacher dim ``hidden_dims[j]``, bias
    0: ``(h_s W)_i = h_s[j]`` if ``i = hidden_dims[j]``, else 0. An extracted student's hidden dims are teacher dims
    (ETD, arXiv:2104.11928), so with this start the hidden match begins at what extraction kept instead of behind a
    random ``W`` whose first gradients push the student's states anywhere."""
    if len(hidden_dims) != proj.in_features or len(set(hidden_dims)) != len(hidden_dims) or \
            not all(0 <= d < proj.out_features for d in hidden_dims):
        raise BertpressError(f"cannot align a {proj.in_features}->{proj.out_features} projection with "
                             f"{len(hidden_dims)} extracted hidden dims: the extraction plan does not fit the student")
    with torch.no_grad():
        proj.weight.zero_()
        proj.weight[torch.as_tensor(hidden_dims), torch.arange(proj.in_features)] = 1.0
        if proj.bias is not None:
            proj.bias.zero_()


def default_relation_heads(ctx: ObjectiveContext, requested: int | None) -> int:
    """Relation heads valid for both models: the shared head count, else one that divides both widths."""
    t, s = ctx.teacher_config, ctx.student_config
    if requested is not None:
        candidates = [requested]
    elif t.num_attention_heads == s.num_attention_heads:
        return int(t.num_attention_heads)
    else:
        candidates = sorted({t.num_attention_heads, s.num_attention_heads}, reverse=True)
    tw, sw = attention_width(t), attention_width(s)
    for r in candidates:
        if r > 0 and tw % r == 0 and sw % r == 0:
            return int(r)
    raise BertpressError(
        f"relation_heads {candidates[0]} does not divide both attention widths (teacher {tw}, student {sw}): set "
        "objective.relation_heads to a common divisor"
    )


def attention_width(config) -> int:
    """Width of a model's queries and keys: the hidden size, or MobileBERT's intra-block bottleneck."""
    return int(config.true_hidden_size if getattr(config, "use_bottleneck", False) else config.hidden_size)
