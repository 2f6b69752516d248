"""A supernet: one teacher-shaped (or smaller) student whose leading slices are the sub-networks (NAS-BERT).

* Ranked by ETD-Impt importance scores of its units (:meth:`Supernet.rank`; DynaBERT's network rewiring, Hou et
  al., 2020), a sub-network keeps the most important heads, per-head dims, FFN neurons and hidden dims of each size:
  exactly ETD-Impt's extraction of its shape. The ranking is an index order, not a permutation of the weights: the
  kept units stay in the supernet's (= the teacher's) order, so the teacher-shaped sub-network *is* the teacher and
  per-head objectives (MiniLM's relations) and hidden-state matches compare a unit with the same teacher unit.
  Without scores a sub-network takes the leading units.
* :class:`Supernet` runs a sub-network as ``torch.func.functional_call`` of a small *shell* model of the
  sub-network's shape (a plain HF model whose own weights are on the meta device) with differentiable slices of the
  supernet's parameters, laid out by ETD's extraction (:func:`bertpress.init.extract.sliced_parameters`): gradients
  reach the supernet, and only the sliced parts of it.
* :meth:`Supernet.extract` copies a sub-network out as a plain HF model (``save_pretrained`` -> ``AutoModel``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from bertpress.errors import BertpressError
from bertpress.init.etd import build_plan, choose_layers
from bertpress.init.extract import ExtractionPlan, extract, sliced_parameters
from bertpress.init.importance import Importance
from bertpress.models.anatomy import anatomy, layer_width_parts, mlm_head_parts
from bertpress.models.student import StudentShape, build_student, student_config
from bertpress.nas.space import Arch, ArchSpace


class Supernet:
    """Sub-networks of ``model`` (the supernet) from ``space``; ``depth``: which supernet layers a sub-network of
    ``L`` layers uses: ``leading`` (the first ``L``, AutoTinyBERT) or a layer mapping rule (``skip``, ``uniform``,
    ``last``...: spread over the depth, as ETD picks teacher layers). ``blocks``: the supernet is cut into that many
    blocks of equal depth (NAS-BERT's block-wise training) and a sub-network of ``L`` layers takes the leading
    layers of every block, ``L`` spread over the blocks as evenly as possible (earlier blocks first)."""

    def __init__(self, model: PreTrainedModel, space: ArchSpace, depth: str = "leading",
                 blocks: int | None = None) -> None:
        self.model, self.space, self.depth, self.blocks = model, space, depth, blocks
        self.parts = anatomy(model)
        p = self.parts
        space.check_fits(p.num_layers, p.hidden_size, p.num_heads, layer_width_parts(p, 0).neurons, p.head_dim)
        if blocks is not None and (depth != "leading" or p.num_layers % blocks or min(space.layers) < blocks):
            raise BertpressError(f"supernet.blocks {blocks}: needs a supernet depth ({p.num_layers}) it divides, "
                                 f"sub-networks of at least {blocks} layers (one per block; the space has "
                                 f"{min(space.layers)}) and depth: leading")
        self.mlm_head = mlm_head_parts(p) is not None
        self._shells: dict[Arch, PreTrainedModel] = {}
        #: importance of the supernet's units (:meth:`rank`); None: sub-networks take the leading units
        self.scores: Importance | None = None
        self.layers(space.smallest)  # an unknown depth rule fails now

    def rank(self, scores: Importance) -> None:
        """Let every sub-network keep the most important units of its size by ``scores`` (ETD-Impt importance of
        the supernet's own units, e.g. the teacher's when the supernet starts as the teacher)."""
        p = self.parts
        want = {"heads": (p.num_layers, p.num_heads), "head_dims": (p.num_layers, p.num_heads * p.head_dim),
                "neurons": (p.num_layers, layer_width_parts(p, 0).neurons), "hidden": (p.hidden_size,)}
        for name, shape in want.items():
            if tuple(getattr(scores, name).shape) != shape:
                raise BertpressError(f"importance scores of {name} have shape {tuple(getattr(scores, name).shape)}, "
                                     f"the supernet's units {shape}: score the supernet's own units (its teacher's "
                                     "when it starts as the teacher)")
        self.scores = scores

    def block_groups(self, arch: Arch) -> list[list[int]]:
        """With ``blocks``: per block, the 1-based supernet layers ``arch`` uses in it (its leading ones)."""
        n, size = self.blocks, self.parts.num_layers // self.blocks
        return [[b * size + j + 1 for j in range(arch.layers // n + (b < arch.layers % n))] for b in range(n)]

    def block_part(self, arch: Arch, block: int) -> tuple[Arch, ExtractionPlan]:
        """``arch``'s layers in block ``block`` (0-based) as a sub-network of their own: its shape and units (those
        ``arch`` uses there), which a block process runs alone (``supernet.block``)."""
        full = self.plan(arch)
        group = self.block_groups(arch)[block]
        at = [full.layers.index(x) for x in group]
        plan = ExtractionPlan(layers=group, hidden_dims=full.hidden_dims, heads=[full.heads[i] for i in at],
                              head_dims=[full.head_dims[i] for i in at], neurons=[full.neurons[i] for i in at])
        return Arch(len(group), arch.hidden, arch.heads, arch.ffn), plan

    def layers(self, arch: Arch) -> list[int]:
        """The 1-based supernet layers of ``arch``."""
        if self.blocks is not None:
            return [x for group in self.block_groups(arch) for x in group]
        if self.depth == "leading":
            return list(range(1, arch.layers + 1))
        try:
            return choose_layers(self.depth, self.parts.num_layers, arch.layers)
        except (BertpressError, KeyError, TypeError, ValueError):
            raise BertpressError(f"supernet depth {self.depth!r}: use leading or a layer mapping rule (skip, "
                                 "uniform, last, first)") from None

    def plan(self, arch: Arch) -> ExtractionPlan:
        """The units of ``arch`` in ETD's extraction layout: the most important (:meth:`rank`) or the leading."""
        if self.scores is not None:
            return build_plan(self.parts, self.config(arch), self.layers(arch), self.scores, torch.Generator())
        d = self.parts.head_dim
        n_heads = max(arch.heads, math.ceil(arch.hidden / d))
        per_head = [arch.hidden // n_heads + (j < arch.hidden % n_heads) for j in range(n_heads)]
        return ExtractionPlan(layers=self.layers(arch), hidden_dims=list(range(arch.hidden)),
                              heads=[list(range(n_heads))] * arch.layers,
                              head_dims=[[list(range(k)) for k in per_head]] * arch.layers,
                              neurons=[list(range(arch.ffn))] * arch.layers)

    def config(self, arch: Arch) -> PretrainedConfig:
        return student_config(self.model.config, StudentShape(arch.layers, arch.hidden, arch.heads, arch.ffn))

    def shell(self, arch: Arch) -> PreTrainedModel:
        """A model of ``arch``'s shape whose parameters live on the meta device (its buffers are real): the module
        structure :meth:`__call__` runs with sliced supernet weights (cached per shape)."""
        if arch not in self._shells:
            with torch.random.fork_rng(devices=[]):  # building one must not move the run's RNG (dropout, resume)
                shell = build_student(self.config(arch), mlm_head=self.mlm_head)
            meta: dict[int, nn.Parameter] = {}
            for module in shell.modules():
                for name, param in list(module._parameters.items()):
                    if param is not None:  # tied weights stay tied: one meta parameter per original
                        module._parameters[name] = meta.setdefault(
                            id(param), nn.Parameter(torch.empty_like(param, device="meta"), param.requires_grad))
            self._shells[arch] = shell
        shell = self._shells[arch]
        shell.train(self.model.training)
        return shell

    def num_parameters(self, arch: Arch) -> int:
        """Parameters of ``arch`` as a plain model (tied weights once)."""
        return sum(p.numel() for p in self.shell(arch).parameters())

    def parameters_of(self, arch: Arch) -> dict[str, Tensor]:
        """``arch``'s weights: differentiable slices of the supernet's parameters, by the shell's names."""
        return sliced_parameters(self.model, self.shell(arch), self.plan(arch))

    def __call__(self, arch: Arch, module: nn.Module | None = None, plan: ExtractionPlan | None = None,
                 **inputs: Tensor) -> Any:
        """Run sub-network ``arch`` on ``inputs`` (``module``: a submodule of its shell to call instead, e.g. the
        encoder without the MLM head; ``plan``: its units, if not :meth:`plan`'s, e.g. a :meth:`block_part`)."""
        shell = self.shell(arch)
        params = sliced_parameters(self.model, shell, plan or self.plan(arch))
        if module is None or module is shell:
            return torch.func.functional_call(shell, params, args=(), kwargs=inputs)
        prefix = next(n for n, m in shell.named_modules() if m is module)
        own = {k[len(prefix) + 1:]: v for k, v in params.items() if k.startswith(prefix + ".")} if prefix else params
        return torch.func.functional_call(module, own, args=(), kwargs=inputs)

    @torch.no_grad()
    def extract(self, arch: Arch) -> PreTrainedModel:
        """Sub-network ``arch`` as a plain HF model with its own copy of the weights."""
        with torch.random.fork_rng(devices=[]):
            student = build_student(self.config(arch), mlm_head=self.mlm_head)
        extract(self.model, student, self.plan(arch))
        return student.train(self.model.training)
