"""NaN/Inf losses: stop the run naming the step and the term (``train.on_nonfinite: stop``), or skip the batch.

``stop`` costs no host synchronisation per step: losses stay on the device and are read all at once at the loop's
next sync point (a log line, validation, checkpoint, stage end, the end), before anything is logged, validated or
saved from weights a non-finite step touched; the run then stops at the first bad step, and its last checkpoint
predates it. ``skip`` must know before the optimizer step, so it reads every micro-batch's flag at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import Tensor

from bertpress.errors import BertpressError
from bertpress.train.checkpoint import latest_checkpoint

log = logging.getLogger(__name__)


class NonFiniteGuard:
    """Watches a run's losses; ``train`` is the recipe's train section, ``ckpt_root`` where checkpoints go."""

    def __init__(self, train, accelerator: Accelerator, ckpt_root: Path) -> None:
        self.cfg, self.acc, self.ckpt_root = train, accelerator, ckpt_root
        #: (step, loss, terms) of micro-batches not yet checked (``stop``)
        self.pending: list[tuple[int, Tensor, dict[str, Tensor]]] = []

    def skip(self, step: int, loss: Tensor, terms: dict[str, Tensor]) -> bool:
        """True when the micro-batch of ``step`` must be skipped: a NaN/Inf loss on any process with ``skip``.
        With ``stop`` the loss is kept for :meth:`check` and nothing is read now."""
        if self.cfg.on_nonfinite != "skip":
            self.pending.append((step, loss.detach(), {k: v.detach() for k, v in terms.items()}))
            return False
        flag = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=self.acc.device)
        if self.acc.num_processes > 1:
            flag = self.acc.reduce(flag, reduction="sum")
        if flag.item() == 0:
            return False
        log.warning("non-finite loss at step %d (term %r): batch skipped", step, _bad_term(terms))
        return True

    def due(self, step: int, stage_end: int, stop_after: int | None) -> bool:
        """Whether ``step`` is a sync point (every process reaches the same ones) with losses waiting."""
        cfg = self.cfg
        return bool(self.pending) and (
            step % cfg.log_every == 0 or step >= stage_end or step >= cfg.max_steps
            or bool(cfg.eval_every and step % cfg.eval_every == 0)
            or bool(cfg.save_every and step % cfg.save_every == 0)
            or (stop_after is not None and step >= stop_after))

    def check(self) -> None:
        """Read the kept losses (one synchronisation); raise at the first non-finite one."""
        pending, self.pending = self.pending, []
        flags = torch.stack([~torch.isfinite(loss) for _, loss, _ in pending]).float()
        if self.acc.num_processes > 1:
            flags = self.acc.reduce(flags, reduction="sum")
        if not flags.any().item():
            return
        step, loss, terms = pending[int(torch.nonzero(flags).flatten()[0])]
        bad = _bad_term(terms)
        last = latest_checkpoint(self.ckpt_root)
        raise BertpressError(
            f"non-finite loss at step {step} (term {bad!r} = {float(terms.get(bad, loss))}): lower "
            f"train.lr or check the data; resume from {last or 'the start'} with --resume, or set "
            f"train.on_nonfinite: skip", exit_code=3)


def _bad_term(terms: dict[str, Tensor]) -> str:
    return next((k for k, v in terms.items() if not torch.isfinite(v).item()), "loss")
