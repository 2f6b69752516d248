"""Capture the intermediate outputs an objective needs, with forward hooks, from unmodified HF models.

Hidden states come from hooks on the embedding block (its projection when factorised) and on each layer; query,
key and value are captured as the raw projections of the layers that need them (relations, see
:mod:`bertpress.objectives.losses`). A layer's own attention scores/probabilities come from its attention kernel
where the model dispatches attention through transformers' interface (:mod:`bertpress.models.attention`: eager in
that layer, SDPA in the others), else they are recomputed once from the captured query and key. A tap on the
teacher runs only as many layers as the deepest feature it reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bertpress.errors import BertpressError
from bertpress.models.anatomy import Anatomy
from bertpress.models.attention import (
    IMPLEMENTATION,
    SLOT,
    Capture,
    attention_module,
    head_scores,
    masked_probs,
    supports_capture,
)


@dataclass(frozen=True)
class FeatureRequest:
    """What to capture from one model. Layer numbers are 1-based; hidden state 0 is the embedding output.
    ``scores``/``probs``: the layer's own attention (all its heads): scaled ``QKᵀ`` before the mask, and the masked
    softmax before dropout."""

    hidden: frozenset[int] = frozenset()
    query: frozenset[int] = frozenset()
    key: frozenset[int] = frozenset()
    value: frozenset[int] = frozenset()
    logits: bool = False
    scores: frozenset[int] = frozenset()
    probs: frozenset[int] = frozenset()

    def __or__(self, other: FeatureRequest) -> FeatureRequest:
        return FeatureRequest(self.hidden | other.hidden, self.query | other.query, self.key | other.key,
                              self.value | other.value, self.logits or other.logits, self.scores | other.scores,
                              self.probs | other.probs)

    def depth(self, num_layers: int) -> int:
        """How many layers must run: all of them for logits, else the deepest captured one."""
        if self.logits:
            return num_layers
        return max([*self.hidden, *self.query, *self.key, *self.value, *self.scores, *self.probs, 0])


@dataclass
class Features:
    """Captured tensors. ``query``/``key``/``value`` are ``[batch, seq, all_head_size]`` projections; ``scores`` and
    ``probs`` are ``[batch, heads, seq, seq]``."""

    hidden: dict[int, Tensor] = field(default_factory=dict)
    query: dict[int, Tensor] = field(default_factory=dict)
    key: dict[int, Tensor] = field(default_factory=dict)
    value: dict[int, Tensor] = field(default_factory=dict)
    logits: Tensor | None = None
    scores: dict[int, Tensor] = field(default_factory=dict)
    probs: dict[int, Tensor] = field(default_factory=dict)

    def apply(self, fn: Callable[[Tensor], Tensor]) -> Features:
        """The same features with ``fn`` applied to every tensor."""

        def each(d: dict[int, Tensor]) -> dict[int, Tensor]:
            return {k: fn(v) for k, v in d.items()}

        return Features(each(self.hidden), each(self.query), each(self.key), each(self.value),
                        None if self.logits is None else fn(self.logits), each(self.scores), each(self.probs))

    def cloned(self) -> Features:
        """Plain copies (e.g. of inference-mode tensors), safe to use next to the student's autograd graph."""
        return self.apply(Tensor.clone)


def _first(output: Tensor | tuple) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


class FeatureTap:
    """Persistent hooks on one model that collect the requested features on every forward.

    ``tap(input_ids=..., attention_mask=...)`` runs the model (the full model when logits are requested, else only
    the encoder, and with ``truncate`` only the layers needed) and returns the :class:`Features` of that call.
    ``runner`` replaces the callable (e.g. a ``torch.compile``-d encoder); hooks stay on the original modules.
    Attention ``scores``/``probs`` are recomputed from the captured query and key, or with ``kernel`` taken from the
    attention kernel where the model supports it (``self.kernel``): the captured layers then run eager attention
    instead of SDPA. That is for the student, whose matrices carry gradients; a teacher tap keeps SDPA everywhere,
    so its features never depend on what is captured (a cohort's shared teacher equals each solo teacher).
    """

    def __init__(self, parts: Anatomy, request: FeatureRequest, *, truncate: bool = False,
                 runner: nn.Module | None = None, kernel: bool = False) -> None:
        self.parts, self.request = parts, request
        self.depth = request.depth(parts.num_layers) if truncate else parts.num_layers
        self.runner = runner if runner is not None else (parts.model if request.logits else parts.base)
        self._feats = Features()
        self._handles = []
        self._captures: list[tuple[nn.Module, Capture]] = []
        attention = request.scores | request.probs
        self.kernel = kernel and bool(attention) and supports_capture(parts.model)
        if attention and not self.kernel:  # recomputed from the projections after the forward
            request = request | FeatureRequest(query=attention, key=attention)
        if 0 in request.hidden:
            self._hook(parts.embedding_output, "hidden", 0)
        for i in request.hidden - {0}:
            self._hook(parts.layers[i - 1], "hidden", i)
        for slot, name in enumerate(("query", "key", "value")):
            for i in getattr(request, name):
                proj = parts.attention_projections(i - 1)[slot]
                self._hook(proj.module, name, i, proj.select)
        if self.kernel:
            self._attach(attention)

    def _attach(self, layers: frozenset[int]) -> None:
        """Give the attention module of every layer in ``layers`` a capture slot; switch the model to the
        capturing implementation (the first tap on a model remembers the one to restore)."""
        model = self.parts.model
        if not hasattr(model, "_bertpress_restore"):
            model._bertpress_restore = model.config._attn_implementation
            model.set_attn_implementation(IMPLEMENTATION)
        model._bertpress_taps = getattr(model, "_bertpress_taps", 0) + 1
        for i in layers:
            module = attention_module(self.parts.attention_projections(i - 1)[0].module, self.parts.layers[i - 1])
            capture = Capture(self._putter(i), scores=i in self.request.scores, probs=i in self.request.probs)
            setattr(module, SLOT, [*getattr(module, SLOT, []), capture])
            self._captures.append((module, capture))

    def _putter(self, layer: int):
        def put(kind: str, tensor: Tensor) -> None:
            getattr(self._feats, kind).setdefault(layer, tensor)

        return put

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
        self._attention(feats, attention_mask)
        return feats

    def _attention(self, feats: Features, attention_mask: Tensor | None) -> None:
        """Check the kernel handed over every requested matrix, or compute them from the captured projections."""
        for kind in ("scores", "probs"):
            for i in getattr(self.request, kind):
                if self.kernel:
                    if i not in getattr(feats, kind):
                        raise BertpressError(f"layer {i} of {type(self.parts.model).__name__} computed attention "
                                             "without the capturing implementation: report this model type")
                    continue
                scores = head_scores(feats.query[i], feats.key[i], self.parts.num_heads)
                if kind == "scores":
                    feats.scores[i] = scores
                else:
                    feats.probs[i] = masked_probs(scores, attention_mask)

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module, capture in self._captures:
            left = [c for c in getattr(module, SLOT) if c is not capture]
            if left:
                setattr(module, SLOT, left)
            else:
                delattr(module, SLOT)
        if self._captures:
            model = self.parts.model
            model._bertpress_taps -= 1
            if not model._bertpress_taps:
                model.set_attn_implementation(model._bertpress_restore)
                del model._bertpress_restore, model._bertpress_taps
        self._captures.clear()


def teacher_forward(tap: FeatureTap, *, inference_mode: bool = False, **inputs: Tensor) -> Features:
    """Teacher features without autograd (``torch.no_grad``). With ``inference_mode`` the forward runs under
    ``torch.inference_mode`` and its tensors are cloned so losses may save them: the clones cost more than
    inference mode saves (about 20 ms of a 350 ms bf16 teacher forward on 2 CPU cores), hence not the default."""
    if inference_mode:
        with torch.inference_mode():
            feats = tap(**inputs)
        return feats.cloned()
    with torch.no_grad():
        return tap(**inputs)


def model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The keys of ``batch`` an encoder's forward takes (the rest are labels, masking targets, positions)."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
