"""Objectives (weighted loss terms over a layer mapping), the pure losses they use, and layer mappings."""

from bertpress.objectives import distilbert, matches, minilm, mobilebert, tinybert  # noqa: F401 - registers the objectives
from bertpress.objectives.base import OBJECTIVES, Objective, ObjectiveContext
from bertpress.objectives.losses import LOSSES
from bertpress.objectives.mapping import MAPPINGS, resolve_mapping


def build_objective(name: str, options: dict | None, ctx: ObjectiveContext) -> Objective:
    """Build the registered objective ``name`` with validated ``options``."""
    entry = OBJECTIVES.get(name)
    opts = options if isinstance(options, entry.options) else entry.options.model_validate(options or {})
    return entry.fn(opts, ctx)


__all__ = ["LOSSES", "MAPPINGS", "OBJECTIVES", "Objective", "ObjectiveContext", "build_objective", "resolve_mapping"]
