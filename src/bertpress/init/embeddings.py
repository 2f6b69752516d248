"""``teacher-embeddings``: copy the teacher's embeddings into a student of any architecture; the rest stays random.

A student whose token table is narrower than the teacher's hidden width (MobileBERT's factorised 128-wide table, an
ELECTRA-style ``embedding_size``) gets it through a PCA: with the teacher's token vectors ``E_t [V, H]`` (after the
teacher's own embedding projection, if it has one), their mean ``μ`` and the SVD ``E_t − μ = U S Vᵀ``, the student's
table is ``U_k S_k [V, k]``, its embedding projection maps a token back with ``V_k`` and adds ``μ`` as its bias, so
the student's projected token vector is the best rank-``k`` affine reconstruction of the teacher's (Eckart–Young;
centring first is never worse than a plain truncated SVD, which would spend one of the ``k`` directions on the
mean). With MobileBERT's trigram input the projection reads ``[next | token | previous]``: the token's block gets
``V_k``, the neighbours' blocks start at zero. Position and token-type embeddings are copied where the widths agree
(the teacher's position offset skipped), the embedding LayerNorm where both models have one (MobileBERT's NoNorm
stays the identity: it cannot represent a normalisation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bertpress.init.base import INITIALISERS, InitContext
from bertpress.models.anatomy import anatomy


def teacher_token_vectors(ctx: InitContext) -> Tensor:
    """``[V, H_teacher]``: the teacher's token embeddings in its hidden space (through its embedding projection)."""
    parts = ctx.teacher.parts
    table = ctx.teacher.model.get_input_embeddings().weight.detach().float()
    if parts.factorised:
        with torch.no_grad():
            table = parts.embedding_output(table)
    return table


def pca_factors(vectors: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(codes [V, k], basis [H, k], mean [H])`` with ``codes @ basis.T + mean`` the best rank-``k`` affine
    approximation of ``vectors [V, H]`` in squared error."""
    mean = vectors.mean(0)
    u, s, vh = torch.linalg.svd(vectors - mean, full_matrices=False)
    return u[:, :k] * s[:k], vh[:k].T, mean


def _projection(base: nn.Module) -> nn.Linear | None:
    """The linear map from the student's token table to its hidden width, when the forward applies one."""
    cfg = base.config
    if cfg.model_type == "mobilebert":
        used = cfg.trigram_input or cfg.embedding_size != cfg.hidden_size
        return base.embeddings.embedding_transformation if used else None
    return getattr(base, "embeddings_project", None)


@INITIALISERS.register("teacher-embeddings")
def teacher_embeddings_init(ctx: InitContext, options: None) -> dict[str, Any]:
    """Teacher embeddings into any student (a PCA of them for a narrower token table); other weights random."""
    t_parts, s_parts = ctx.teacher.parts, anatomy(ctx.student)
    vectors = teacher_token_vectors(ctx)
    s_table = ctx.student.get_input_embeddings().weight
    width = t_parts.hidden_size
    copied: list[str] = []
    with torch.no_grad():
        rows = min(len(s_table), len(vectors))
        project = _projection(s_parts.base)
        trigram = bool(getattr(s_parts.base.config, "trigram_input", False)) and project is not None
        if project is None and s_table.shape[1] == width:
            s_table[:rows].copy_(vectors[:rows])
            copied.append("word_embeddings")
        elif project is not None and project.out_features == width and s_table.shape[1] <= width:
            k = s_table.shape[1]
            codes, basis, mean = pca_factors(vectors[:rows], k)
            s_table[:rows].copy_(codes)
            project.weight.zero_()
            middle = slice(k, 2 * k) if trigram else slice(0, k)
            project.weight[:, middle].copy_(basis)
            project.bias.copy_(mean)
            kept = float(1 - (codes @ basis.T + mean - vectors[:rows]).pow(2).sum()
                         / (vectors[:rows] - mean).pow(2).sum())
            copied += [f"word_embeddings (PCA to {k} dims, {100 * kept:.1f}% of the variance)",
                       "embedding projection"]
        t_emb, s_emb = t_parts.embeddings, s_parts.embeddings
        offset = t_parts.layout.positions_offset
        for name in ("position_embeddings", "token_type_embeddings"):
            src, dst = getattr(t_emb, name, None), getattr(s_emb, name, None)
            if src is None or dst is None or src.weight.shape[1] != dst.weight.shape[1]:
                continue
            first = offset if name == "position_embeddings" else 0
            n = min(len(dst.weight), len(src.weight) - first)
            dst.weight[:n].copy_(src.weight[first:first + n])
            copied.append(name)
        src, dst = getattr(t_emb, "LayerNorm", None), getattr(s_emb, "LayerNorm", None)
        if isinstance(src, nn.LayerNorm) and isinstance(dst, nn.LayerNorm) and src.weight.shape == dst.weight.shape:
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
            copied.append("LayerNorm")
    return {"seed": ctx.seed, "copied": copied}
