"""Metrics to JSONL (one object per line), TensorBoard and any accelerate tracker, from the main process only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertpress.atomic import atomic_write_text


class MetricsLog:
    """Appends records to ``metrics.jsonl``, scalars to TensorBoard (``tensorboard/``, unless ``tensorboard`` is
    false) and to ``forward`` (e.g. ``Accelerator.log`` for W&B or MLflow), keyed ``split/name``."""

    def __init__(self, out_dir: Path, *, enabled: bool, resume_step: int | None = None, tensorboard: bool = True,
                 forward: Callable[[dict[str, float], int], None] | None = None) -> None:
        self.enabled, self.forward = enabled, forward
        self.path = out_dir / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        if resume_step is not None:
            self._truncate_after(resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        """Drop records past the resumed checkpoint, so the log reads as one uninterrupted run."""
        if not self.path.is_file():
            return
        def keep(record: dict[str, Any]) -> bool:  # a stage start at the resumed step is logged again on resume
            at = record.get("step", 0)
            return at < step or (at == step and record.get("split") != "stage")

        kept = [line for line in self.path.read_text().splitlines() if line.strip() and keep(json.loads(line))]
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def log(self, split: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"split": split, "step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {f"{split}/{k}": v for k, v in values.items() if isinstance(v, (int, float))}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
        if self.forward is not None and scalars:
            self.forward(scalars, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path, split: str | None = None) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (optionally one split)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]
