"""MobileBERT students (Sun et al., ACL 2020): deep, thin bottleneck blocks, from a teacher of any BERT-family type.

Each block keeps the residual stream at the block (inter-block) width, which defaults to the teacher's hidden size so
hidden states match the teacher's without a projection; inside it, a linear bottleneck narrows to the intra-block
width where attention and a stack of small FFNs run, and a linear layer widens back. Embeddings are factorised (an
``embedding_size`` table; with ``trigram_input`` the embeddings of the previous, current and next token are
concatenated and projected to the block width). The model is ``transformers``' own ``MobileBertModel``, so a saved
student loads with ``AutoModel.from_pretrained``.

Defaults are the authors' MobileBERT configuration (``uncased_L-24_H-128_B-512_A-4_F-4_OPT.json`` in
google-research/mobilebert: intra-block 128, embeddings 128 with trigram input, 4 FFNs of 512, NoNorm, ReLU,
hidden dropout 0, attention dropout 0.1, query/key sharing one bottleneck); depth and block width default to the
teacher's, so the layer-to-layer transfer of the paper maps student layer i to teacher layer i.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from transformers import MobileBertConfig, PretrainedConfig

from bertpress.config import Strict
from bertpress.errors import BertpressError
from bertpress.models.student import StudentShape


class MobileBertOptions(Strict):
    """``student.architecture_options`` of ``architecture: mobilebert``."""

    bottleneck: int = Field(128, gt=0, description="intra-block width: attention and FFNs run at it (MobileBERT: 128)")
    num_ffn: int = Field(4, ge=1, description="stacked FFNs per block (MobileBERT: 4)")
    embedding_size: int = Field(128, gt=0, description="width of the (factorised) token embedding table")
    trigram_input: bool = Field(True, description="embed each token with its neighbours (concatenated, projected)")
    normalization: Literal["no_norm", "layer_norm"] = Field(
        "no_norm", description="no_norm: the element-wise affine NoNorm of MobileBERT; layer_norm: LayerNorm")
    activation: Literal["relu", "gelu"] = Field("relu", description="FFN activation (MobileBERT: relu)")
    shared_qk_bottleneck: bool = Field(True, description="query and key read one shared bottleneck (MobileBERT), "
                                                         "values the block input")
    hidden_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on hidden states (MobileBERT: 0)")
    attention_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on attention probabilities")


def mobilebert_config(teacher_config: PretrainedConfig, shape: StudentShape,
                      options: MobileBertOptions | None) -> MobileBertConfig:
    """The config of a MobileBERT student of ``teacher_config`` (its vocabulary, positions and token types).

    ``shape``: depth (default the teacher's), block width (``hidden_size``, default the teacher's), heads (default
    the teacher's, so attention maps match head for head) and FFN width (``intermediate_size``, default 4x the
    bottleneck). From a MobileBERT teacher, every option left out is the teacher's."""
    o = options or MobileBertOptions()
    if teacher_config.model_type == "mobilebert":
        t = teacher_config
        own = {"bottleneck": t.intra_bottleneck_size, "num_ffn": t.num_feedforward_networks,
               "embedding_size": t.embedding_size, "trigram_input": t.trigram_input,
               "normalization": t.normalization_type, "activation": t.hidden_act,
               "shared_qk_bottleneck": t.key_query_shared_bottleneck, "hidden_dropout": t.hidden_dropout_prob,
               "attention_dropout": t.attention_probs_dropout_prob}
        o = MobileBertOptions.model_validate({**own, **o.model_dump(include=o.model_fields_set)})
        shape = StudentShape(shape.num_layers, shape.hidden_size, shape.num_heads,
                             shape.intermediate_size or t.intermediate_size)
    layers = shape.num_layers or teacher_config.num_hidden_layers
    block = shape.hidden_size or teacher_config.hidden_size
    heads = shape.num_heads or teacher_config.num_attention_heads
    ffn = shape.intermediate_size or 4 * o.bottleneck
    if o.bottleneck > block:
        raise BertpressError(f"student.architecture_options.bottleneck {o.bottleneck} is wider than the block width "
                             f"{block}: set bottleneck <= student.hidden_size (MobileBERT: 128 inside 512)")
    if o.embedding_size > block:
        raise BertpressError(f"student.architecture_options.embedding_size {o.embedding_size} is wider than the block "
                             f"width {block}: set embedding_size <= student.hidden_size")
    if o.bottleneck % heads:
        fits = [h for h in range(1, o.bottleneck + 1) if o.bottleneck % h == 0]
        near = sorted(sorted(fits, key=lambda h: (abs(h - heads), h))[:3])
        raise BertpressError(f"student.num_heads {heads} does not divide the bottleneck width {o.bottleneck}: set "
                             f"student.num_heads to {', '.join(map(str, near))} or a bottleneck divisible by {heads}")
    return MobileBertConfig(
        vocab_size=teacher_config.vocab_size, hidden_size=block, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn, hidden_act=o.activation, hidden_dropout_prob=o.hidden_dropout,
        attention_probs_dropout_prob=o.attention_dropout,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=getattr(teacher_config, "type_vocab_size", 2) or 2,
        layer_norm_eps=getattr(teacher_config, "layer_norm_eps", 1e-12),
        pad_token_id=getattr(teacher_config, "pad_token_id", 0) or 0, embedding_size=o.embedding_size,
        trigram_input=o.trigram_input, use_bottleneck=True, intra_bottleneck_size=o.bottleneck,
        use_bottleneck_attention=False, key_query_shared_bottleneck=o.shared_qk_bottleneck,
        num_feedforward_networks=o.num_ffn, normalization_type=o.normalization)
