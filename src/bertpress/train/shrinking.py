"""Progressive shrinking of a supernet's space (NAS-BERT, Xu et al., 2021, sec. 3.3: search-space pruning).

Every ``every`` steps the shapes still sampled are scored by held-out distillation loss through the supernet (the
run's objective for each shape, dropout off, the first ``batches`` held-out batches, the teacher's features computed
once), grouped into ``bins`` of similar parameter count, and the worst ``fraction`` of each bin (at least one while
the bin keeps one) stops being sampled; the largest and smallest shapes always stay (the sandwich rule trains them).
What was dropped, and when, lives in the checkpointed ``TrainState.callbacks``, so a resumed run samples exactly as
an uninterrupted one. ``bertpress search-arch`` still scores every shape.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from bertpress.models.features import teacher_forward
from bertpress.nas.space import Arch
from bertpress.train.callbacks import Callback

log = logging.getLogger(__name__)

KEY = "shrinking"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class SpaceShrinking(Callback):
    """The callback a supernet recipe with ``supernet.shrink`` installs."""

    def __init__(self, every: int, fraction: float, bins: int = 4, batches: int = 2) -> None:
        self.every, self.fraction, self.bins, self.batches = every, fraction, bins, batches

    @staticmethod
    def _module(distiller: Any) -> Any:
        return distiller.acc.unwrap_model(distiller.model)

    def on_stage_start(self, distiller: Any, stage: Any) -> None:
        """(Re-)apply what earlier shrinking dropped (a resumed run continues with the same space)."""
        module = self._module(distiller)
        names = {a.name: a for a in module.supernet.space.archs()}
        module.excluded = {names[n] for event in distiller.state.callbacks.get(KEY, []) for n in event["dropped"]}

    def on_step_end(self, distiller: Any, step: int, terms: dict[str, float] | None) -> None:
        if step % self.every or step >= distiller.cfg.max_steps:
            return
        module = self._module(distiller)
        space = module.supernet.space
        active = [a for a in space.archs() if a not in module.excluded]
        scores = self.score(distiller, active)
        dropped = choose_dropped(active, scores, {a: module.supernet.num_parameters(a) for a in active}, self.bins,
                                 self.fraction, keep={space.largest, space.smallest})
        module.excluded |= set(dropped)
        distiller.state.callbacks.setdefault(KEY, []).append(
            {"step": step, "scored": len(active), "dropped": [a.name for a in dropped],
             "left": len(active) - len(dropped)})
        log.info("supernet space shrinking at step %d: %d of %d shapes dropped", step, len(dropped), len(active))

    def score(self, distiller: Any, archs: list[Arch]) -> dict[Arch, float]:
        """Held-out loss of each shape (dropout off) on the first ``batches`` held-out batches."""
        batches = distiller.held_out_batches(self.batches)
        with torch.no_grad():
            teacher = [teacher_forward(distiller.teacher_tap, **{k: b[k] for k in _INPUTS if k in b}) for b in batches]
        return self._module(distiller).heldout_losses(archs, batches, teacher)


def choose_dropped(archs: list[Arch], scores: dict[Arch, float], sizes: dict[Arch, int], bins: int, fraction: float,
                   keep: set[Arch]) -> list[Arch]:
    """The worst ``fraction`` (by score, higher = worse) of each of ``bins`` groups of similar size, never ``keep``,
    and never a bin's last shape."""
    ordered = sorted(archs, key=lambda a: (sizes[a], a))
    per_bin = math.ceil(len(ordered) / bins)
    dropped: list[Arch] = []
    for start in range(0, len(ordered), per_bin):
        group = ordered[start:start + per_bin]
        k = min(max(1, math.floor(fraction * len(group))), len(group) - 1) if fraction > 0 else 0
        candidates = sorted((a for a in group if a not in keep), key=lambda a: (-scores[a], a))
        dropped += candidates[:k]
    return sorted(dropped)
