"""Supernet distillation: every step trains sampled sub-networks of one supernet against the teacher.

:class:`SupernetObjective` holds one objective per sub-network shape (its layer mapping resolved for the shape's
depth, as a solo student of that shape would get) and asks the teacher for what any of them reads, so the teacher
runs once per batch. :class:`SupernetModule` is what the loop trains in place of a plain student: per micro-batch it
draws the sub-networks (:meth:`bertpress.nas.space.ArchSpace.sample`, seeded by the micro-batch's position, so
every process and every resume draws the same), runs each as a slice of the supernet and sums their objectives
(gradients accumulate in the shared weights: the sandwich rule's sum). Validation scores the largest and the
smallest sub-network. With ``inplace`` (in-place distillation, slimmable networks / BigNAS) the largest sub-network learns
from the teacher and the others from the largest's features (detached), which needs a teacher-shaped supernet.
Objectives with learned parameters (projections to the teacher's width) are refused: one
projection per shape would not be shared; MiniLM's relations need none.

Block-wise training (NAS-BERT, Xu et al., KDD 2021, sec. 3.2; ``supernet.blocks``): the supernet is cut into blocks
of equal depth and a sub-network's layers in block ``b`` learn to map the teacher's output of block ``b - 1`` (on
the sub-network's hidden dims) to the teacher's output of block ``b``, by the hidden-state MSE
(:func:`bertpress.objectives.losses.hidden_mse`); the first block reads the sub-network's own embeddings. No
gradient crosses a block boundary, so the blocks train independently of one another: with ``supernet.block`` a
process trains one block alone (running only that block's layers), and :mod:`bertpress.train.merge` joins the
block processes' supernets into one. Validation, shrinking and ``search-arch`` still score sub-networks end to end
with the recipe's objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bertpress.errors import BertpressError
from bertpress.init.extract import ExtractionPlan
from bertpress.models.anatomy import anatomy
from bertpress.models.features import FeatureRequest, Features, FeatureTap, model_inputs
from bertpress.nas.space import Arch, ArchSpace
from bertpress.nas.supernet import Supernet
from bertpress.objectives.base import Objective
from bertpress.objectives.losses import hidden_mse


class SupernetObjective(Objective):
    """One parameter-free objective per shape of ``space``, built by ``build(arch)``."""

    def __init__(self, space: ArchSpace, build: Callable[[Arch], Objective], name: str,
                 teacher_hidden: frozenset[int] = frozenset()) -> None:
        super().__init__({"loss": 1.0})
        self.space, self.name = space, name
        #: teacher hidden states read besides the objectives' (the block boundaries of block-wise training)
        self.teacher_hidden = teacher_hidden
        self.per_arch: dict[Arch, Objective] = {}
        for arch in space.archs():
            objective = build(arch)
            if any(True for _ in objective.parameters()):
                raise BertpressError(
                    f"supernet: objective {name!r} learns parameters (projections) for sub-network {arch.name}, "
                    "which sub-networks of other widths cannot share: use minilm (relations need no projection), or "
                    "an objective without hidden-state matches at widths other than the teacher's")
            self.per_arch[arch] = objective
        self.needs_masking = any(o.needs_masking for o in self.per_arch.values())

    def requests(self) -> tuple[FeatureRequest, FeatureRequest]:
        teacher = FeatureRequest(hidden=self.teacher_hidden)
        for objective in self.per_arch.values():
            teacher = teacher | objective.requests()[0]
        return teacher, FeatureRequest()

    def terms(self, student: Features, teacher: Features, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        raise TypeError("a supernet objective is computed per sub-network by SupernetModule")

    def describe(self) -> dict[str, Any]:
        big, small = self.space.largest, self.space.smallest
        return {"supernet": self.name, "shapes": len(self.per_arch),
                "largest": self.per_arch[big].describe(), "smallest": self.per_arch[small].describe()}


def _detached(feats: Features) -> Features:
    return feats.apply(Tensor.detach)


class _Slice:
    """Runs sub-network ``arch`` (its encoder, or the whole model for logits) as a slice of the supernet; ``plan``:
    its units, if not the supernet's plan of ``arch`` (a block part)."""

    def __init__(self, supernet: Supernet, arch: Arch, module: nn.Module, plan: ExtractionPlan | None = None) -> None:
        self.supernet, self.arch, self.module, self.plan = supernet, arch, module, plan

    def __call__(self, **inputs: Tensor) -> Any:
        return self.supernet(self.arch, module=self.module, plan=self.plan, **inputs)


class _BlockFeed:
    """Forward pre-hooks on the first layer of every block but the first: while ``teacher`` holds the teacher's
    hidden states, such a layer reads the teacher's previous-block output on ``dims`` instead of its own input."""

    def __init__(self, layers: Sequence[nn.Module], starts: dict[int, int], dims: Tensor) -> None:
        self.teacher: dict[int, Tensor] | None = None
        self.dims = dims
        self.handles = [layers[i].register_forward_pre_hook(self._hook(t), with_kwargs=True)
                        for i, t in starts.items()]

    def _hook(self, teacher_layer: int):
        def pre(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if self.teacher is None:
                return None
            h = self.teacher[teacher_layer].index_select(-1, self.dims)
            if args:
                return (h, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": h}

        return pre


class SupernetModule(nn.Module):
    """The trainable part of a supernet run: the supernet (``student``) and its stages' supernet objectives."""

    def __init__(self, supernet: Supernet, objectives: Sequence[SupernetObjective], *, seed: int,
                 sampling: str = "sandwich", random: int = 2, inplace: bool = False, block: int | None = None) -> None:
        super().__init__()
        if inplace and sampling != "sandwich":
            raise BertpressError("supernet.inplace: the largest sub-network teaches the others, so it must train in "
                                 "every step: use sampling: sandwich")
        if block is not None and not (supernet.blocks and 0 <= block < supernet.blocks):
            raise BertpressError(f"supernet.block {block}: needs block-wise training (supernet.blocks) and a block "
                                 "index in 0..blocks-1")
        self.inplace, self.block = inplace, block
        self.supernet, self.student = supernet, supernet.model
        self.objectives = nn.ModuleList(objectives)
        self.parts = anatomy(self.student)
        self.seed, self.sampling, self.random = seed, sampling, random
        self.active = 0
        self._taps: dict[tuple[int, Arch, bool], FeatureTap] = {}
        self._blocks: dict[Arch, tuple[FeatureTap, _BlockFeed, list[tuple[int, int]]]] = {}
        #: shapes dropped from sampling by progressive shrinking of the space
        self.excluded: set[Arch] = set()

    def activate(self, index: int) -> None:
        self.active = index

    def archs(self, batch: dict[str, Any]) -> list[tuple[str, Arch]]:
        """(role, shape) of the sub-networks this batch trains: the sampled ones in training, the largest alone
        for the loop's reachability probe (no position), the largest and smallest in validation."""
        space = self.supernet.space
        if not self.training:
            return [("largest", space.largest), ("smallest", space.smallest)]
        if "position" not in batch:
            return [("largest", space.largest)]
        among = [a for a in space.archs() if a not in self.excluded] if self.excluded else None
        drawn = space.sample(self.seed, int(batch["position"]), self.sampling, self.random, among)
        if self.sampling == "random":
            return [("random", drawn[0])]
        return [("largest", drawn[0]), ("smallest", drawn[1]), *(("random", a) for a in drawn[2:])]

    def features(self, arch: Arch, batch: dict[str, Any]) -> Features:
        """What the active objective reads of sub-network ``arch`` on ``batch``."""
        inputs = model_inputs(batch)
        return self._tap(arch)(**inputs)

    def _tap(self, arch: Arch, teaching: bool = False) -> FeatureTap:
        key = (self.active, arch, teaching)
        if key not in self._taps:
            objective = self.objectives[self.active]
            request = objective.per_arch[arch].requests()[1]
            if teaching:  # also what every sub-network's objective reads of its teacher
                request = request | objective.requests()[0]
            parts = anatomy(self.supernet.shell(arch))
            self._taps[key] = FeatureTap(parts, request, kernel=True, runner=_Slice(
                self.supernet, arch, parts.model if request.logits else parts.base))
        return self._taps[key]

    def block_losses(self, arch: Arch, batch: dict[str, Any], teacher: Features) -> Tensor:
        """Block-wise training's loss of ``arch``: the sum over blocks of the MSE between the sub-network's block
        output and the teacher's (on the sub-network's hidden dims), each block fed the teacher's previous-block
        output. With ``block``, only that block runs (the first with the embeddings) and only its term is
        computed: the same gradients for its parameters as the sum's."""
        if arch not in self._blocks:
            size = self.parts.num_layers // self.supernet.blocks
            dims = torch.as_tensor(self.supernet.plan(arch).hidden_dims, dtype=torch.long)
            if self.block is None:
                parts, plan, shape = anatomy(self.supernet.shell(arch)), None, arch
                starts, pairs, done = {}, [], 0
                for b, group in enumerate(self.supernet.block_groups(arch)):
                    if b:
                        starts[done] = b * size  # shell layer `done` reads the teacher's output of block b
                    done += len(group)
                    pairs.append((done, (b + 1) * size))  # (sub-network hidden state, teacher hidden state)
            else:  # this process's block alone: its layers run as a sub-network of their own
                b = self.block
                shape, plan = self.supernet.block_part(arch, b)
                parts = anatomy(self.supernet.shell(shape))
                starts, pairs = ({0: b * size} if b else {}), [(shape.layers, (b + 1) * size)]
            tap = FeatureTap(parts, FeatureRequest(hidden=frozenset(s for s, _ in pairs)),
                             runner=_Slice(self.supernet, shape, parts.base, plan))
            self._blocks[arch] = (tap, _BlockFeed(parts.layers, starts, dims), pairs)
        tap, feed, pairs = self._blocks[arch]
        inputs = model_inputs(batch)
        feed.dims = feed.dims.to(batch["input_ids"].device)  # once: a no-op after the first batch
        feed.teacher = teacher.hidden
        try:
            student = tap(**inputs)
        finally:
            feed.teacher = None
        mask = batch.get("attention_mask")
        return sum(hidden_mse(student.hidden[s], teacher.hidden[t].index_select(-1, feed.dims), mask)
                   for s, t in pairs)

    @torch.no_grad()
    def heldout_losses(self, archs: Sequence[Arch], batches: Sequence[dict[str, Any]],
                       teacher: Sequence[Features]) -> dict[Arch, float]:
        """Mean loss of each shape over ``batches`` against their ``teacher`` features, dropout off (the score
        of space shrinking and of ``bertpress search-arch``)."""
        objective = self.objectives[self.active]
        was_training = self.training
        self.eval()
        try:
            return {a: sum(float(objective.per_arch[a](self.features(a, batch), t, batch)[0])
                           for batch, t in zip(batches, teacher, strict=True)) / len(batches) for a in archs}
        finally:
            self.train(was_training)

    def forward(self, batch: dict[str, Any], teacher_feats: Features) -> tuple[Tensor, dict[str, Tensor]]:
        objective = self.objectives[self.active]
        total: Tensor | float = 0.0
        sums: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        teaching = self.inplace and self.training and "position" in batch
        inputs = model_inputs(batch)
        blockwise = self.supernet.blocks is not None and self.training and "position" in batch
        for role, arch in self.archs(batch):
            if blockwise:
                loss = self.block_losses(arch, batch, teacher_feats)
            elif teaching and role == "largest":  # in-place distillation: the largest learns from the teacher and
                feats = self._tap(arch, teaching=True)(**inputs)  # teaches the others (its features, detached)
                loss, _ = objective.per_arch[arch](feats, teacher_feats, batch)
                targets = _detached(feats)
            else:
                loss, _ = objective.per_arch[arch](self.features(arch, batch),
                                                   targets if teaching else teacher_feats, batch)
            total = total + loss
            sums[f"loss_{role}"] = sums.get(f"loss_{role}", 0.0) + loss.detach()
            counts[role] = counts.get(role, 0) + 1
        return total, {k: v / counts[k[5:]] for k, v in sums.items()}
