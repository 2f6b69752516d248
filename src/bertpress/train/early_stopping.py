"""Per-stage early stopping on the held-out loss, keeping the best weights (XtremeDistil, Mukherjee et al., 2021:
the authors' Keras ``EarlyStopping(restore_best_weights=True)`` around every stage).

The records are the checkpointed ``TrainState.early`` (per stage: best loss and its step, validations without
improvement, the last validated step, where the stage stopped); the best weights travel in the checkpoint's extra
tensors, so a resumed run restores the same weights an uninterrupted one would.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

log = logging.getLogger(__name__)


class BestWeights:
    """The early-stopping state of a run: ``records`` (``TrainState.early``) and the best weights of the stage being
    early-stopped (on CPU; ``None`` when no stage is)."""

    def __init__(self, records: dict[str, dict], best: dict[str, Tensor] | None = None) -> None:
        self.records, self.best = records, best

    def track(self, stage: str, rule: tuple[int, float], step: int, loss: float, module: nn.Module) -> bool:
        """Record held-out ``loss`` at ``step``; a new best (by more than ``min_delta``) snapshots ``module``'s
        weights. True when ``patience`` validations in a row did not improve: the stage should stop."""
        patience, min_delta = rule
        rec = self.records.setdefault(stage, {"best": None, "best_step": None, "bad": 0})
        rec["last_step"] = step
        if rec["best"] is None or loss < rec["best"] - min_delta:
            rec.update(best=loss, best_step=step, bad=0)
            self.best = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            return False
        rec["bad"] += 1
        return rec["bad"] >= patience

    def stopped(self, stage: str, step: int) -> None:
        """``stage`` ran out of patience at ``step``."""
        rec = self.records[stage]
        rec["stopped_at"] = step
        log.info("stage %s: early stop at step %d (no held-out improvement in %d validations)", stage, step,
                 rec["bad"])

    def has_stopped(self, stage: str) -> bool:
        return "stopped_at" in self.records.get(stage, {})

    def last_validated(self, stage: str) -> int | None:
        return self.records.get(stage, {}).get("last_step")

    def restore(self, stage: str, module: nn.Module) -> None:
        """Load the stage's best weights into ``module`` (unless its last validation was the best) and forget them."""
        rec = self.records[stage]
        if rec["best_step"] != rec["last_step"] and self.best is not None:
            module.load_state_dict(self.best)
            log.info("stage %s: restored the best weights (held-out loss %.4g at step %d)", stage, rec["best"],
                     rec["best_step"])
        self.best = None
