"""The initialiser registry and what every initialiser receives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bertpress.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import PreTrainedModel

    from bertpress.models.teacher import Teacher


@dataclass
class InitContext:
    """Everything an initialiser may use.

    ``sample_batches(n)`` yields up to ``n`` batches (``input_ids``, ``attention_mask``) of training text, for
    initialisers that measure importance; ``cache_dir`` is where they may cache what they compute (the run's output
    directory); ``seed`` makes random choices reproducible.
    """

    teacher: Teacher
    student: PreTrainedModel
    seed: int
    sample_batches: Callable[[int], Iterator[dict[str, Tensor]]] | None = None
    cache_dir: Path | None = None


#: An initialiser fills ``ctx.student`` in place and returns its plan (JSON-serialisable), recorded in the output.
Initialiser = Callable[[InitContext, BaseModel | None], dict[str, Any]]

INITIALISERS: Registry[Initialiser] = Registry("initialiser")


def _options(name: str, options: dict[str, Any] | BaseModel | None) -> BaseModel | None:
    entry = INITIALISERS.get(name)
    if entry.options is None:
        return None
    return options if isinstance(options, entry.options) else entry.options.model_validate(options or {})


def check_initialiser(name: str, ctx: InitContext, options: dict[str, Any] | BaseModel | None = None) -> None:
    """Fail fast (shape and option checks, no compute) if ``name`` cannot initialise ``ctx.student``."""
    entry = INITIALISERS.get(name)
    if entry.preflight is not None:
        entry.preflight(ctx, _options(name, options))


def initialise(name: str, ctx: InitContext, options: dict[str, Any] | BaseModel | None = None) -> dict[str, Any]:
    """Run the initialiser ``name`` with validated ``options``; returns its plan."""
    check_initialiser(name, ctx, options)
    plan = INITIALISERS.get(name).fn(ctx, _options(name, options))
    return {"name": name, **plan}
