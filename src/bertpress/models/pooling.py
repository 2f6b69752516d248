"""Sentence embeddings the way a model is meant to be pooled: its sentence-transformers config, else mean pooling.

A sentence-transformers directory names its pooling in ``modules.json`` -> the Pooling module's ``config.json``
(``pooling_mode_mean_tokens`` / ``pooling_mode_cls_token`` / ``pooling_mode_max_tokens``). A bertpress student
records its teacher in ``bertpress.json``, so a student of a sentence-transformers teacher is pooled like it. A
plain encoder is mean-pooled, sentence-transformers' own fallback (and better than [CLS] without fine-tuning,
Reimers & Gurevych, 2019).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from bertpress.models.teacher import resolve_model

log = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "max"]
POOLING_MODULE = "sentence_transformers.models.Pooling"
_MODES: tuple[tuple[str, Pooling], ...] = (("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean"),
                                           ("pooling_mode_max_tokens", "max"))


def sentence_transformers_pooling(model_dir: Path) -> Pooling | None:
    """The pooling mode of a sentence-transformers directory, ``None`` when it is not one (or names another mode)."""
    modules = Path(model_dir) / "modules.json"
    if not modules.is_file():
        return None
    try:
        entries = json.loads(modules.read_text())
        entry = next(m for m in entries if m.get("type") == POOLING_MODULE)
        config = json.loads((Path(model_dir) / entry.get("path", "") / "config.json").read_text())
    except (OSError, ValueError, StopIteration, AttributeError):
        return None
    return next((mode for key, mode in _MODES if config.get(key)), None)


def model_pooling(model_dir: Path) -> tuple[Pooling, str]:
    """How to pool ``model_dir`` and why: its own sentence-transformers config, its teacher's (bertpress student),
    or mean pooling."""
    own = sentence_transformers_pooling(model_dir)
    if own:
        return own, "sentence-transformers config"
    summary = Path(model_dir) / "bertpress.json"
    if summary.is_file():
        try:
            source = json.loads(summary.read_text())["teacher"]["source"]
            teacher = sentence_transformers_pooling(Path(resolve_model(source)).expanduser())
        except (OSError, ValueError, KeyError, TypeError):
            teacher = None
        if teacher:
            return teacher, f"its teacher's sentence-transformers config ({source})"
    return "mean", "default (no sentence-transformers config)"


def pool(hidden: Tensor, attention_mask: Tensor, mode: Pooling) -> Tensor:
    """``[B, T, H]`` token states -> ``[B, H]`` sentence embeddings over the unmasked tokens."""
    if mode == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
