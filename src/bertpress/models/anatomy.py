"""Where the parts of a BERT-family encoder live, in one place.

Every module that needs "layer i's query projection" or "the embedding block" asks :func:`anatomy` instead of
hard-coding attribute paths, so supporting another architecture means changing this file only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from bertpress.errors import BertpressError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

#: Model types known to share BERT's module layout (embeddings + encoder.layer[i].attention.self.query/key/value).
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie", "data2vec-text")


@dataclass(frozen=True)
class Anatomy:
    """Handles on the parts of one encoder model (the model itself is never modified)."""

    model: PreTrainedModel
    base: PreTrainedModel
    embeddings: nn.Module
    layers: nn.ModuleList
    has_mlm_head: bool

    @property
    def embedding_output(self) -> nn.Module:
        """The module whose output enters layer 1 (hidden state 0): the embeddings, or with factorised embeddings
        (ELECTRA's ``embedding_size`` != ``hidden_size``) the projection that lifts them to the hidden width."""
        project = getattr(self.base, "embeddings_project", None)
        return self.embeddings if project is None else project

    @property
    def factorised(self) -> bool:
        """Whether the embeddings are narrower than the hidden width and projected (ELECTRA-small's layout)."""
        return getattr(self.base, "embeddings_project", None) is not None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.base.config.hidden_size)

    @property
    def num_heads(self) -> int:
        return int(self.base.config.num_attention_heads)

    @property
    def head_dim(self) -> int:
        return self.attention_projections(0)[0].out_features // self.num_heads

    def attention_projections(self, layer: int) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        """The query, key and value projections of 0-based ``layer``."""
        att = self.layers[layer].attention.self
        return att.query, att.key, att.value


def _is_mlm_model(model: PreTrainedModel) -> bool:
    return model.get_output_embeddings() is not None and model is not model.base_model


def anatomy(model: PreTrainedModel) -> Anatomy:
    """Locate embeddings, layers and attention projections, or say clearly that the architecture is unsupported."""
    base = model.base_model
    model_type = getattr(model.config, "model_type", "?")
    try:
        embeddings = base.embeddings
        layers = base.encoder.layer
        first = layers[0].attention.self
        first.query, first.key, first.value  # noqa: B018 - probing the layout
    except (AttributeError, IndexError):
        raise BertpressError(
            f"model type {model_type!r} does not have the BERT layout bertpress distils "
            f"(embeddings + encoder.layer[i].attention.self.query/key/value): use one of "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        ) from None
    return Anatomy(model, base, embeddings, layers, _is_mlm_model(model))


# --- Width-level handles (used by ETD extraction and importance, bertpress.init) -------------------------------------


@dataclass(frozen=True)
class LayerWidthParts:
    """Every module of one layer that reads or writes the residual stream, the heads or the FFN neurons.

    ``attention_core`` outputs ``(concatenated head outputs [B, T, heads * head_dim], ...)``, the input of
    ``attention_output``; ``ffn_activation`` outputs the FFN's post-activation neurons ``[B, T, intermediate]``.
    """

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attention_core: nn.Module
    attention_output: nn.Linear
    attention_norm: nn.LayerNorm
    ffn_activation: nn.Module
    intermediate: nn.Linear
    output: nn.Linear
    output_norm: nn.LayerNorm


def layer_width_parts(parts: Anatomy, layer: int) -> LayerWidthParts:
    """The width-level modules of 0-based ``layer`` (BERT layout, shared by every supported model type)."""
    block = parts.layers[layer]
    q, k, v = parts.attention_projections(layer)
    return LayerWidthParts(q, k, v, block.attention.self, block.attention.output.dense,
                           block.attention.output.LayerNorm, block.intermediate, block.intermediate.dense,
                           block.output.dense, block.output.LayerNorm)


@dataclass(frozen=True)
class MLMHeadParts:
    """The masked-LM head: ``dense`` and ``norm`` (hidden -> hidden transform), ``decoder`` (hidden -> vocabulary,
    usually tied to the word embeddings) and the vocabulary biases (``decoder.bias`` and a separate ``bias``
    parameter of the head; in HF they are usually one tied parameter)."""

    dense: nn.Linear
    norm: nn.LayerNorm
    decoder: nn.Linear
    biases: tuple[nn.Parameter, ...]


#: (transform dense, transform norm, module holding the vocabulary ``bias``) per MLM head layout.
_MLM_HEAD_PATHS = (
    ("cls.predictions.transform.dense", "cls.predictions.transform.LayerNorm", "cls.predictions"),  # BERT, ERNIE
    ("lm_head.dense", "lm_head.layer_norm", "lm_head"),  # RoBERTa, XLM-R, CamemBERT, data2vec-text
    ("generator_predictions.dense", "generator_predictions.LayerNorm", None),  # ELECTRA generator
)


def mlm_head_parts(parts: Anatomy) -> MLMHeadParts | None:
    """The MLM head's modules, ``None`` for a bare encoder; an unknown head layout is refused."""
    if not parts.has_mlm_head:
        return None
    model, decoder = parts.model, parts.model.get_output_embeddings()
    for dense, norm, owner in _MLM_HEAD_PATHS:
        try:
            d, n = model.get_submodule(dense), model.get_submodule(norm)
            bias_owner = model.get_submodule(owner) if owner else decoder
        except AttributeError:
            continue
        biases = {id(b): b for b in (decoder.bias, getattr(bias_owner, "bias", None)) if b is not None}
        return MLMHeadParts(d, n, decoder, tuple(biases.values()))
    raise BertpressError(
        f"masked-LM head of {type(model).__name__} has an unknown layout: use a BERT, RoBERTa or ELECTRA-style "
        f"MLM checkpoint, or load the teacher with mlm_head: false"
    )


def pooler_dense(parts: Anatomy) -> nn.Linear | None:
    """The pooler's dense layer (hidden -> hidden), when the model has a pooler."""
    pooler = getattr(parts.base, "pooler", None)
    return pooler.dense if pooler is not None else None
