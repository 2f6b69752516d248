"""The loop's seam: a few moments at which user code (benchmarks, schedules, a NAS supernet) may act.

Modelled on TextBrewer's ``callback`` and torchdistill's stage hooks; deliberately four moments, not a Trainer's
eighteen. Every method receives the :class:`~bertpress.train.distiller.Distiller` (its ``student()``, ``state``,
``stage`` and ``validate()``), so a callback can read or change the run without monkeypatching the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bertpress.train.distiller import Distiller
    from bertpress.train.stages import Stage


class Callback:
    """Subclass and override what you need; every method does nothing by default."""

    def on_stage_start(self, distiller: Distiller, stage: Stage) -> None:
        """A stage begins (also when a resumed run re-enters the stage it stopped in)."""

    def on_step_end(self, distiller: Distiller, step: int, terms: dict[str, float] | None) -> None:
        """Optimizer step ``step`` (1-based) is done; ``terms`` are its loss terms when they were read (log steps)."""

    def on_evaluate(self, distiller: Distiller, step: int, metrics: dict[str, float]) -> None:
        """Held-out metrics at ``step`` (also the final evaluation)."""

    def on_save(self, distiller: Distiller, step: int, path: Path) -> None:
        """A checkpoint of ``step`` was written to ``path``."""


def fire(callbacks: list[Callback], event: str, *args: Any) -> None:
    """Call ``event`` on every callback, in order."""
    for cb in callbacks:
        getattr(cb, event)(*args)
