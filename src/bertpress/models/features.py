"""Capture the intermediate outputs an objective needs, with forward hooks, from unmodified HF models.

Hidden states come from hooks on the embedding block (its projection when factorised) and on each layer; attention is captured as the raw
query/key/value projections of the layers that need it, so the model itself keeps its fast fused attention (SDPA)
and attention scores are materialised only for those layers (see :mod:`bertpress.objectives.losses`).
A tap on the teacher runs only as many layers as the deepest feature it reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bertpress.models.anatomy import Anatomy


@dataclass(frozen=True)
class FeatureRequest:
    """What to capture from one model. Layer numbers are 1-based; hidden state 0 is the embedding output."""

    hidden: frozenset[int] = frozenset()
    query: frozenset[int] = frozenset()
    key: frozenset[int] = frozenset()
    value: frozenset[int] = frozenset()
    logits: bool = False

    def __or__(self, other: FeatureRequest) -> FeatureRequest:
        return FeatureRequest(self.hidden | other.hidden, self.query | other.query, self.key | other.key,
                              self.value | other.value, self.logits or other.logits)

    def depth(self, num_layers: int) -> int:
        """How many layers must run: all of them for logits, else the deepest captured one."""
        if self.logits:
            return num_layers
        return max([*self.hidden, *self.query, *self.key, *self.value, 0])


@dataclass
class Features:
    """Captured tensors. ``query``/``key``/``value`` are ``[batch, seq, all_head_size]`` projections."""

    hidden: dict[int, Tensor] = field(default_factory=dict)
    query: dict[int, Tensor] = field(default_factory=dict)
    key: dict[int, Tensor] = field(default_factory=dict)
    value: dict[int, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None

    def cloned(self) -> Features:
        """Plain copies (e.g. of inference-mode tensors), safe to use next to the student's autograd graph."""

        def c(d: dict[int, Tensor]) -> dict[int, Tensor]:
            return {k: v.clone() for k, v in d.items()}

        return Features(c(self.hidden), c(self.query), c(self.key), c(self.value),
                        None if self.logits is None else self.logits.clone())


def _first(output: Tensor | tuple) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


class FeatureTap:
    """Persistent hooks on one model that collect the requested features on every forward.

    ``tap(input_ids=..., attention_mask=...)`` runs the model (the full model when logits are requested, else only
    the encoder, and with ``truncate`` only the layers needed) and returns the :class:`Features` of that call.
    ``runner`` replaces the callable (e.g. a ``torch.compile``-d encoder); hooks stay on the original modules.
    """

    def __init__(self, parts: Anatomy, request: FeatureRequest, *, truncate: bool = False,
                 runner: nn.Module | None = None) -> None:
        self.parts, self.request = parts, request
        self.depth = request.depth(parts.num_layers) if truncate else parts.num_layers
        self.runner = runner if runner is not None else (parts.model if request.logits else parts.base)
        self._feats = Features()
        self._handles = []
        if 0 in request.hidden:
            self._hook(parts.embedding_output, "hidden", 0)
        for i in request.hidden - {0}:
            self._hook(parts.layers[i - 1], "hidden", i)
        for slot, name in enumerate(("query", "key", "value")):
            for i in getattr(request, name):
                proj = parts.attention_projections(i - 1)[slot]
                self._hook(proj.module, name, i, proj.select)

    def _hook(self, module: nn.Module, store: str, idx: int, select=None) -> None:
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor | tuple) -> None:
            found = getattr(self._feats, store)
            if idx in found:  # a projection applied twice per forward keeps its first use (DeBERTa projects its
                return        # relative-position embeddings with the layer's own query/key after the tokens)
            out = _first(output)
            found[idx] = out if select is None else select(out)

        self._handles.append(module.register_forward_hook(hook))

    @contextlib.contextmanager
    def _truncated(self) -> Iterator[None]:
        parent_path, _, attr = self.parts.layout.layers.rpartition(".")
        parent = self.parts.base.get_submodule(parent_path) if parent_path else self.parts.base
        full = getattr(parent, attr)
        if self.depth >= len(full):
            yield
            return
        setattr(parent, attr, nn.ModuleList(list(full)[: self.depth]))
        try:
            yield
        finally:
            setattr(parent, attr, full)

    def __call__(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 token_type_ids: Tensor | None = None) -> Features:
        self._feats = Features()
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        with self._truncated():
            out = self.runner(**kwargs)
        feats, self._feats = self._feats, Features()
        if self.request.logits:
            feats.logits = out.logits if hasattr(out, "logits") else _first(out)
        return feats

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def teacher_forward(tap: FeatureTap, *, inference_mode: bool = True, **inputs: Tensor) -> Features:
    """Teacher features without autograd; inference-mode tensors are cloned so losses may save them."""
    if inference_mode:
        with torch.inference_mode():
            feats = tap(**inputs)
        return feats.cloned()
    with torch.no_grad():
        return tap(**inputs)
