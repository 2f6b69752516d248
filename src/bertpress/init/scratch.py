"""``random``: the student keeps Hugging Face's own initialisation (drawn under the recipe seed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bertpress.init.base import INITIALISERS, InitContext


@INITIALISERS.register("random")
def random_init(ctx: InitContext, options: BaseModel | None) -> dict[str, Any]:
    """Train from scratch: weights as initialised by the model class under the recipe seed."""
    return {"seed": ctx.seed}
