"""Checkpoints that are either complete or absent: saved to ``step-N.tmp`` and renamed; the last N kept.

A checkpoint holds what :meth:`accelerate.Accelerator.save_state` saves (student and projections, optimizer,
registered scheduler, every process's RNG states) plus ``trainer_state.json`` (step, data position, tokens seen,
elapsed time, stage). ``--resume`` restores all of it, so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from bertpress.atomic import atomic_write_json

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"
#: tensors a checkpoint carries besides accelerate's state (an early-stopping stage's best weights)
EXTRA_FILE = "best.pt"


@dataclass
class TrainState:
    """Loop position and counters; ``micro_step`` is the number of micro-batches consumed (per process), ``stage``
    the 0-based stage the run is in."""

    step: int = 0
    stage: int = 0
    micro_step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # CPU seconds of this process (all its threads), like ``elapsed`` across resumes
    skipped_batches: int = 0
    precision: str = ""  # the autocast the run trained with (``train.mixed_precision: auto`` resolved)
    labelled_micro_step: int = 0  # micro-batches consumed from the labelled examples (stages with data: labelled)
    #: per stage with early stopping: best held-out loss and its step, validations without improvement, where it
    #: stopped (the best weights themselves are in the checkpoint's ``best.pt``)
    early: dict = field(default_factory=dict)
    #: what the run's own callbacks keep across a resume (a supernet's shrinking of its space)
    callbacks: dict = field(default_factory=dict)


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (``.tmp`` leftovers of a crash are ignored)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(root: Path) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(accelerator: Accelerator, root: Path, state: TrainState, keep: int,
                    extra: dict[str, Any] | None = None) -> Path:
    """Save everything to ``root/step-N`` atomically (all processes call this) and prune old checkpoints;
    ``extra`` tensors go to :data:`EXTRA_FILE`."""
    final = root / f"step-{state.step:08d}"
    tmp = root / f"step-{state.step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extra is not None:
            torch.save(extra, tmp / EXTRA_FILE)
        atomic_write_json(tmp / STATE_FILE, asdict(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob("step-*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states; returns the loop position."""
    accelerator.load_state(str(path))
    state = TrainState(**json.loads((path / STATE_FILE).read_text()))
    log.info("resumed from %s (step %d)", path, state.step)
    return state


def load_extra(path: Path) -> dict[str, Any] | None:
    """The ``extra`` tensors saved with the checkpoint at ``path`` (None when it has none)."""
    f = path / EXTRA_FILE
    return torch.load(f, map_location="cpu", weights_only=True) if f.is_file() else None
