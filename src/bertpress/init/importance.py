r"""How much the teacher's loss depends on each head, attention dim, FFN neuron, hidden dim and layer (ETD-Impt).

Every score is an accumulated first-order (Taylor) estimate of the loss change when one unit is removed, taken per
example ``x`` of a small corpus sample and summed in absolute value (one forward and backward pass per batch;
the teacher is never modified, everything goes through forward hooks):

* head ``h`` of layer ``l`` (Michel et al., 2019, "Are Sixteen Heads Really Better than One?"): a mask
  :math:`\xi_{l,h}=1` multiplies the head's output, :math:`I_{l,h} = \sum_x |\partial L(x) / \partial \xi_{l,h}|`;
* attention dim ``j`` (row ``j`` of Q, K and V, used to pick dims inside a head when the student's head is smaller):
  :math:`I_{l,j} = \sum_x \sum_{P \in \{Q,K,V\}} |\sum_t P_{t,j}\, \partial L / \partial P_{t,j}|`;
* FFN neuron ``n`` (Molchanov et al., 2017, "Pruning CNNs for Resource Efficient Inference", as used by ETD,
  Chen et al., 2021): with :math:`a` the post-activation output, :math:`I_{l,n} = \sum_x |\sum_t a_{t,n}\,
  \partial L / \partial a_{t,n}|`;
* hidden dim ``d`` (ETD: one set of dims for the whole residual stream, so the score sums over the stream's states
  :math:`h^0` = embedding output, :math:`h^l` = output of layer ``l``):
  :math:`I_d = \sum_x \sum_{l=0}^{L} |\sum_t h^l_{t,d}\, \partial L / \partial h^l_{t,d}|`;
* layer ``l`` (for depth by importance): the estimated change when the layer is skipped (:math:`h^l \to h^{l-1}`),
  :math:`I_l = \sum_x |\sum_{t,d} (h^{l-1}_{t,d} - h^l_{t,d})\, \partial L / \partial h^l_{t,d}|`.

The loss ``L`` on a batch with 15% of tokens corrupted by BERT masking (seeded) is, with an MLM head, the masked-LM
cross-entropy over the corrupted tokens; without one, a self-distillation representation loss that is non-zero at
the unmodified teacher: :math:`L = \frac{1}{N D}\sum_t \lVert h^L(\tilde x)_t - \mathrm{sg}[h^L(x)_t] \rVert^2` over
the ``N`` non-padding tokens, the clean input's last hidden states being the detached target.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bertpress.atomic import atomic_write_json
from bertpress.data.masking import mask_tokens
from bertpress.errors import BertpressError
from bertpress.models.anatomy import Anatomy, layer_width_parts
from bertpress.models.teacher import Teacher

log = logging.getLogger(__name__)

#: Cache file in the run's output directory.
SCORE_FILE = "etd-importance.json"
_FORMAT = 1
_FIELDS = ("heads", "head_dims", "neurons", "hidden", "layers")


@dataclass
class Importance:
    """Scores of the teacher's units (higher = more important): ``heads`` [L, H], ``head_dims`` [L, H*d] (Q/K/V
    rows), ``neurons`` [L, F], ``hidden`` [D], ``layers`` [L]; ``loss`` is ``"mlm"`` or ``"representation"``."""

    heads: Tensor
    head_dims: Tensor
    neurons: Tensor
    hidden: Tensor
    layers: Tensor
    loss: str

    def to_json(self) -> dict[str, Any]:
        return {"loss": self.loss, **{k: getattr(self, k).tolist() for k in _FIELDS}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Importance:
        return cls(**{k: torch.tensor(d[k], dtype=torch.float32) for k in _FIELDS}, loss=d["loss"])


def _first(output: Tensor | tuple) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


@dataclass
class _Capture:
    """Activations recorded by the hooks during one forward: stream states, head masks, Q/K/V, FFN neurons."""

    hidden: list[Tensor] = field(default_factory=list)
    masks: list[Tensor] = field(default_factory=list)
    qkv: list[Tensor] = field(default_factory=list)
    qkv_select: list = field(default_factory=list)  # Q/K/V of each output (a fused one is chunked)
    neurons: list[Tensor] = field(default_factory=list)

    def tensors(self) -> list[Tensor]:
        return [*self.hidden, *self.masks, *self.qkv, *self.neurons]


@contextlib.contextmanager
def _capturing(parts: Anatomy) -> Iterator[_Capture]:
    """Hooks that record the activations and insert the head masks; the embedding output becomes a leaf that
    requires grad, so gradients flow through the frozen teacher."""
    cap, handles = _Capture(), []
    heads = parts.num_heads

    def embed(_m, _a, out: Tensor) -> Tensor:
        leaf = out.detach().requires_grad_(True)
        cap.hidden.append(leaf)
        return leaf

    def head_mask(_m, args: tuple) -> tuple:  # on the attention output's input: the concatenated heads
        o = args[0]
        b, t, _ = o.shape
        xi = torch.ones(b, heads, device=o.device, dtype=o.dtype, requires_grad=True)
        cap.masks.append(xi)
        return ((o.view(b, t, heads, -1) * xi[:, None, :, None]).reshape(b, t, -1), *args[1:])

    def record(into: list[Tensor]):
        """Append a module's first output of the forward (DeBERTa applies Q/K again to relative positions)."""
        done = []

        def hook(_m, _a, out) -> None:
            if not done:
                into.append(_first(out))
                done.append(True)

        return hook

    def record_input(into: list[Tensor]):  # on the FFN output's input: the post-activation neurons
        return lambda _m, args: into.append(args[0])

    handles.append(parts.embedding_output.register_forward_hook(embed))
    for i, layer in enumerate(parts.layers):
        w = layer_width_parts(parts, i)
        handles += [p.module.register_forward_hook(record(cap.qkv)) for p in (w.query, w.key, w.value)]
        cap.qkv_select += [p.select for p in (w.query, w.key, w.value)]
        handles += [w.attention_output.register_forward_pre_hook(head_mask),
                    w.output.register_forward_pre_hook(record_input(cap.neurons)),
                    layer.register_forward_hook(record(cap.hidden))]
    try:
        yield cap
    finally:
        for h in handles:
            h.remove()


def _per_example(a: Tensor, g: Tensor) -> Tensor:
    """Sum over examples of |sum over tokens of activation x gradient|: ``[B, T, C]`` -> ``[C]``."""
    return (a.float() * g.float()).sum(1).abs().sum(0)


def _wide(t: Tensor) -> Tensor:
    """``t`` in at least float32 (half-precision teachers), float64 kept."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _loss(teacher: Teacher, corrupted: Tensor, attention_mask: Tensor, labels: Tensor,
          target: Tensor | None) -> Tensor:
    """MLM cross-entropy (with a head) or the representation loss against ``target`` (without) of the batch."""
    if teacher.has_mlm_head:
        logits = teacher.model(input_ids=corrupted, attention_mask=attention_mask).logits
        selected = labels != -100
        return F.cross_entropy(_wide(logits[selected]), labels[selected], reduction="sum") / selected.sum().clamp(min=1)
    hidden = teacher.parts.base(input_ids=corrupted, attention_mask=attention_mask).last_hidden_state
    weight = attention_mask[..., None].float()
    return ((_wide(hidden) - _wide(target)) ** 2 * weight).sum() / (weight.sum().clamp(min=1) * hidden.shape[-1])


def compute_importance(teacher: Teacher, batches: list[dict[str, Tensor]], *, seed: int,
                       mlm_probability: float = 0.15) -> Importance:
    """Accumulate all scores over ``batches`` (``input_ids``, ``attention_mask``); deterministic given ``seed``."""
    tok, parts = teacher.tokenizer, teacher.parts
    if tok.mask_token_id is None:
        raise BertpressError(
            f"teacher tokenizer of {teacher.source!r} has no mask token, which importance needs: use init 'etd-rand'"
        )
    if not batches:
        raise BertpressError("no corpus batches to measure importance on: give the run more training text")
    special = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    device = next(teacher.model.parameters()).device
    n_l = parts.num_layers
    heads = torch.zeros(n_l, parts.num_heads)
    head_dims = torch.zeros(n_l, parts.num_heads * parts.head_dim)
    neurons = torch.zeros(n_l, layer_width_parts(parts, 0).neurons)
    hidden = torch.zeros(parts.hidden_size)
    layers = torch.zeros(n_l)
    for batch in batches:
        ids = batch["input_ids"]
        corrupted, labels = mask_tokens(ids, mask_id=tok.mask_token_id, vocab_size=teacher.model.config.vocab_size,
                                        special_ids=special, generator=generator, probability=mlm_probability)
        ids, corrupted, labels = ids.to(device), corrupted.to(device), labels.to(device)
        attention_mask = batch["attention_mask"].to(device)
        target = None
        if not teacher.has_mlm_head:
            with torch.no_grad():
                target = parts.base(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        with torch.enable_grad(), _capturing(parts) as cap:
            loss = _loss(teacher, corrupted, attention_mask, labels, target)
            grads = torch.autograd.grad(loss, cap.tensors())
        g_hidden, rest = grads[:n_l + 1], grads[n_l + 1:]
        g_masks, g_qkv, g_neurons = rest[:n_l], rest[n_l:4 * n_l], rest[4 * n_l:]
        for i in range(n_l):
            heads[i] += g_masks[i].float().abs().sum(0).cpu()
            head_dims[i] += sum(_per_example(sel(cap.qkv[3 * i + k]), sel(g_qkv[3 * i + k]))
                                for k, sel in enumerate(cap.qkv_select[3 * i:3 * i + 3])).cpu()
            neurons[i] += _per_example(cap.neurons[i], g_neurons[i]).cpu()
            step = (cap.hidden[i].float() - cap.hidden[i + 1].float()) * g_hidden[i + 1].float()
            layers[i] += step.sum((1, 2)).abs().sum().cpu()
        hidden += sum(_per_example(h, g) for h, g in zip(cap.hidden, g_hidden, strict=True)).cpu()
    return Importance(heads, head_dims, neurons, hidden, layers, "mlm" if teacher.has_mlm_head else "representation")


def cache_key(teacher: Teacher, batches: list[dict[str, Tensor]], *, seed: int, mlm_probability: float) -> str:
    """Identity of a score computation: teacher weights, the exact sample, the seed and the masking rate."""
    h = hashlib.sha256(json.dumps({"format": _FORMAT, "teacher": teacher.fingerprint(), "seed": seed,
                                   "mlm_probability": mlm_probability, "mlm": teacher.has_mlm_head}).encode())
    for b in batches:
        for k in ("input_ids", "attention_mask"):
            h.update(b[k].detach().cpu().to(torch.int64).numpy().tobytes())
    return h.hexdigest()


def load_or_compute(teacher: Teacher, batches: list[dict[str, Tensor]], *, seed: int, mlm_probability: float,
                    cache_dir: Path | None) -> tuple[Importance, dict[str, Any]]:
    """Scores from ``cache_dir/etd-importance.json`` when it matches this teacher and sample, else computed (and
    cached when ``cache_dir`` is given). Returns the scores and a summary for the plan."""
    key = cache_key(teacher, batches, seed=seed, mlm_probability=mlm_probability)
    path = Path(cache_dir) / SCORE_FILE if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                scores = Importance.from_json(stored["scores"])
                return scores, {"cache": SCORE_FILE, "reused": True, "batches": len(batches), "loss": scores.loss}
            log.info("importance cache %s is for another teacher or sample: recomputing", path)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("importance cache %s is unreadable (%s): recomputing", path, e)
    scores = compute_importance(teacher, batches, seed=seed, mlm_probability=mlm_probability)
    if path is not None:
        atomic_write_json(path, {"format": _FORMAT, "key": key, "teacher": teacher.source, "seed": seed,
                                 "batches": len(batches), "mlm_probability": mlm_probability,
                                 "scores": scores.to_json()})
    return scores, {"cache": SCORE_FILE if path is not None else None, "reused": False, "batches": len(batches),
                    "loss": scores.loss}
