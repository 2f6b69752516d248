"""Copy a sub-network of the teacher into a smaller student, given the kept indices (the ETD extraction step).

Extract Then Distill (Chen et al., 2021, arXiv:2104.11928) starts the student from a slice of the teacher. An
:class:`ExtractionPlan` names what is kept; :func:`extract` copies exactly those sub-tensors:

* hidden dims ``H`` (the residual stream): columns of the word / position / token-type embeddings (with factorised
  embeddings, as in ELECTRA-small, the embeddings are copied whole and the rows of their projection sliced), every LayerNorm,
  rows of every matrix that writes the stream (attention output, FFN output, pooler, MLM transform) and columns of
  every matrix that reads it (Q, K, V, FFN input, pooler, MLM transform, decoder - the tie with the word embeddings
  is kept because both are sliced the same way);
* per student layer, the attention dims ``A`` (teacher head ``h``'s dims ``j`` are row ``h * d_t + j`` of Q/K/V and
  column of the attention output), laid out so that consecutive chunks of ``d_s`` form the student's heads;
* per student layer, the FFN neurons ``N``: rows of the FFN input, columns of the FFN output.

Weights are copied unscaled: a student head's logits are its kept dims' dot product over ``sqrt(d_s)``, which keeps
their spread close to the teacher's (rescaling the query to the teacher's ``1 / sqrt(d_t)`` matched the teacher's
outputs less well on all-MiniLM-L6-v2). With all indices kept in order the student is the teacher, exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from bertpress.errors import BertpressError
from bertpress.models.anatomy import anatomy, layer_width_parts, mlm_head_parts, pooler_dense


@dataclass(frozen=True)
class ExtractionPlan:
    """What the student keeps of the teacher. Layers are 1-based (as in ``select``); every other index is 0-based.

    ``heads[i]`` are the teacher heads used by student layer ``i`` and ``head_dims[i][j]`` the dims (within
    ``0 .. d_t-1``) kept of ``heads[i][j]``; their concatenation, chunked by the student head size, gives the student
    heads (one teacher head each when ``d_s <= d_t``, several concatenated when ``d_s > d_t``).
    """

    layers: list[int]
    hidden_dims: list[int]
    heads: list[list[int]]
    head_dims: list[list[list[int]]]
    neurons: list[list[int]]

    def attention_index(self, layer: int, teacher_head_dim: int) -> list[int]:
        """Teacher Q/K/V rows (= attention-output columns) kept for 0-based student ``layer``, in student order."""
        return [h * teacher_head_dim + j for h, dims in zip(self.heads[layer], self.head_dims[layer], strict=True) for j in dims]

    def to_dict(self) -> dict[str, list]:
        return asdict(self)


def _index(values: list[int], size: int, what: str) -> Tensor:
    if len(set(values)) != len(values) or any(not 0 <= v < size for v in values):
        raise BertpressError(f"extraction plan {what} must be distinct indices in 0..{size - 1}: rebuild the plan")
    return torch.as_tensor(values, dtype=torch.long)


class _Copier:
    """Copies sliced teacher tensors into student parameters, remembering which student parameters it wrote."""

    def __init__(self) -> None:
        self.written: set[int] = set()

    @staticmethod
    def slice(dst: Tensor, src: Tensor, rows: Tensor | None, cols: Tensor | None) -> Tensor:
        if rows is not None:
            src = src.index_select(0, rows.to(src.device))
        if cols is not None:
            src = src.index_select(1, cols.to(src.device))
        if src.shape != dst.shape:
            raise BertpressError(
                f"extraction plan gives a {tuple(src.shape)} slice for a {tuple(dst.shape)} student tensor: "
                "build the plan for this student's shape"
            )
        return src

    def tensor(self, dst: Tensor, src: Tensor, rows: Tensor | None = None, cols: Tensor | None = None) -> None:
        dst.copy_(self.slice(dst, src.detach(), rows, cols).to(dst.device, dst.dtype))
        self.written.add(id(dst))

    def linear(self, dst: nn.Linear, src: nn.Linear, rows: Tensor | None, cols: Tensor | None) -> None:
        self.tensor(dst.weight, src.weight, rows, cols)
        if dst.bias is not None:
            self.tensor(dst.bias, src.bias, rows)

    def norm(self, dst: nn.LayerNorm, src: nn.LayerNorm, dims: Tensor | None) -> None:
        self.tensor(dst.weight, src.weight, dims)
        if dst.bias is not None:
            self.tensor(dst.bias, src.bias, dims)

    def identity_norm(self, dst: nn.LayerNorm) -> None:
        """A norm with unit scale and zero shift (where the teacher layer has no norm to copy)."""
        self.tensor(dst.weight, torch.ones_like(dst.weight))
        if dst.bias is not None:
            self.tensor(dst.bias, torch.zeros_like(dst.bias))


class _Collector(_Copier):
    """Keeps the sliced source tensors (differentiable: gradients reach the source) by student parameter name."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.names = {id(p): n for n, p in student.named_parameters()}
        self.tensors: dict[str, Tensor] = {}

    def tensor(self, dst: Tensor, src: Tensor, rows: Tensor | None = None, cols: Tensor | None = None) -> None:
        self.tensors[self.names[id(dst)]] = self.slice(dst, src, rows, cols)
        self.written.add(id(dst))


def check_layout(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    """Refuse a student of another model type, or one whose embedding factorisation differs from the teacher's."""
    if teacher.config.model_type != student.config.model_type:
        raise BertpressError(
            f"ETD extracts teacher weights into a student of the teacher's type, but the student is "
            f"{student.config.model_type!r} and the teacher {teacher.config.model_type!r}: use init "
            "'teacher-embeddings' or 'random' (or leave student.architecture out)"
        )
    t_emb, s_emb = (getattr(m.config, "embedding_size", m.config.hidden_size) for m in (teacher, student))
    if anatomy(teacher).factorised and (s_emb != t_emb or not anatomy(student).factorised):
        raise BertpressError(
            f"the teacher factorises its embeddings (embedding_size {t_emb}) and ETD copies them whole, so the student "
            f"needs that embedding_size and a projection to its own width (got embedding_size {s_emb}, hidden_size "
            f"{student.config.hidden_size}): set student.hidden_size != {t_emb}, or use init 'random'"
        )


@torch.no_grad()
def extract(teacher: PreTrainedModel, student: PreTrainedModel, plan: ExtractionPlan) -> int:
    """Fill every parameter of ``student`` with its slice of ``teacher`` per ``plan``; returns tensors written.

    Raises :class:`BertpressError` when the plan does not fit the two shapes or a student parameter has no source.
    """
    copy = _Copier()
    _apply(teacher, student, plan, copy)
    return len(copy.written)


def sliced_parameters(source: PreTrainedModel, shell: PreTrainedModel, plan: ExtractionPlan) -> dict[str, Tensor]:
    """What :func:`extract` would copy into ``shell``, as differentiable slices of ``source``'s parameters by
    ``shell``'s parameter names: ``torch.func.functional_call(shell, sliced_parameters(...), ...)`` runs the
    sub-network of ``source`` that ``plan`` names, and its gradients reach ``source`` (a supernet's sub-network)."""
    collect = _Collector(shell)
    _apply(source, shell, plan, collect)
    return collect.tensors


def _apply(teacher: PreTrainedModel, student: PreTrainedModel, plan: ExtractionPlan, copy: _Copier) -> None:
    """Hand every student parameter's slice of ``teacher`` to ``copy`` (which copies or collects it)."""
    check_layout(teacher, student)
    tp, sp = anatomy(teacher), anatomy(student)
    d_t = tp.head_dim
    n = len(plan.layers)
    if n != sp.num_layers or not len(plan.heads) == len(plan.head_dims) == len(plan.neurons) == n \
            or any(not 1 <= x <= tp.num_layers for x in plan.layers):
        raise BertpressError(
            f"extraction plan layers {plan.layers} must list {sp.num_layers} teacher layers in 1..{tp.num_layers}, "
            "with heads, head_dims and neurons for each: one entry per student layer"
        )
    hidden = _index(plan.hidden_dims, tp.hidden_size, "hidden_dims")

    # factorised embeddings (ELECTRA-small) are copied whole and their projection's rows sliced; otherwise the
    # embedding width is the hidden width and is sliced like it
    emb = None if tp.factorised else hidden
    for name, module in tp.embeddings.named_children():
        dst = sp.embeddings.get_submodule(name)
        if isinstance(module, nn.Embedding):
            copy.tensor(dst.weight, module.weight, None, emb)
        elif isinstance(module, nn.LayerNorm):
            copy.norm(dst, module, emb)
    if tp.factorised:
        copy.linear(sp.embedding_output, tp.embedding_output, hidden, None)

    width = tp.num_heads * d_t
    for i, t_layer in enumerate(plan.layers):
        t, s = layer_width_parts(tp, t_layer - 1), layer_width_parts(sp, i)
        att = _index(plan.attention_index(i, d_t), width, f"attention dims of student layer {i + 1}")
        ffn = _index(plan.neurons[i], t.neurons, f"neurons of student layer {i + 1}")
        if t.query.chunk is None:
            for dst, src in ((s.query, t.query), (s.key, t.key), (s.value, t.value)):
                copy.linear(dst.module, src.module, att, hidden)
        else:  # fused [q | k | v] (ModernBERT): the same dims of each third
            copy.linear(s.query.module, t.query.module, torch.cat([att, att + width, att + 2 * width]), hidden)
        copy.linear(s.attention_output, t.attention_output, hidden, att)
        if s.attention_norm is not None and t.attention_norm is not None:
            copy.norm(s.attention_norm, t.attention_norm, hidden)
        elif s.attention_norm is not None:  # from a layer without one (ModernBERT's first): the identity
            copy.identity_norm(s.attention_norm)
        # a GLU's input projection is [input | gate], the same neurons of each half
        copy.linear(s.intermediate, t.intermediate, torch.cat([ffn, ffn + t.neurons]) if t.glu else ffn, hidden)
        copy.linear(s.output, t.output, hidden, ffn)
        copy.norm(s.output_norm, t.output_norm, hidden)

    # parts every layer shares: norms and relative-position tables over the hidden width (DeBERTa, ModernBERT), or
    # a per-head relative-attention bias (MPNet), which takes the heads of the first student layer
    for t_mod, s_mod in zip(tp.shared_modules(), sp.shared_modules(), strict=True):
        if isinstance(t_mod, nn.LayerNorm):
            copy.norm(s_mod, t_mod, hidden)
        elif t_mod.weight.shape[-1] == tp.hidden_size:
            copy.tensor(s_mod.weight, t_mod.weight, None, hidden)
        else:
            heads = _index(plan.heads[0][:sp.num_heads], tp.num_heads, "heads of student layer 1")
            copy.tensor(s_mod.weight, t_mod.weight, None, heads)

    t_pool, s_pool = pooler_dense(tp), pooler_dense(sp)
    if t_pool is not None and s_pool is not None:
        copy.linear(s_pool, t_pool, hidden, hidden)

    t_head, s_head = mlm_head_parts(tp), mlm_head_parts(sp)
    if t_head is not None and s_head is not None:
        # the head's transform writes the embedding width (ELECTRA's generator head: hidden -> embedding_size)
        copy.linear(s_head.dense, t_head.dense, emb, hidden)
        copy.norm(s_head.norm, t_head.norm, emb)
        copy.tensor(s_head.decoder.weight, t_head.decoder.weight, None, emb)
        for s_bias, t_bias in zip(s_head.biases, t_head.biases, strict=True):
            copy.tensor(s_bias, t_bias)

    missing = [n for n, p in student.named_parameters() if id(p) not in copy.written]
    if missing:
        raise BertpressError(
            f"ETD has no extraction rule for student parameters {', '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}: use init 'random' or 'select' for this architecture"
        )
