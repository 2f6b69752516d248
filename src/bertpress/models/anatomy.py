"""Where the parts of an encoder live, per model type, in one table.

Every module that needs "layer i's query projection", "the embedding block", the weight-name prefix of the layers,
the blocks worth compiling or the position offset asks :func:`anatomy` (and its :class:`Layout`) instead of
hard-coding attribute paths, so supporting another architecture means adding one :class:`Layout` to
:data:`LAYOUTS`. Paths are relative to the base model (``model.base_model``) or, for per-layer parts, to one layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from bertpress.errors import BertpressError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class Layout:
    """Where one family of model types keeps its parts.

    ``qkv`` names a fused query/key/value projection (ModernBERT's ``Wqkv``: its output is ``[q | k | v]``) instead
    of ``query``/``key``/``value``; ``glu`` marks an FFN input producing ``[input | gate]`` (``act(input) * gate``
    enters the output projection). ``shared`` are base-model parameters used by every layer (relative-position
    tables, a final norm); ``positions_offset`` is how many position ids the model reserves (RoBERTa's padding
    offset); ``compile_blocks`` are the hook-free per-layer blocks ``train.compile`` compiles.
    """

    embeddings: str = "embeddings"
    layers: str = "encoder.layer"
    query: str | None = "attention.self.query"
    key: str | None = "attention.self.key"
    value: str | None = "attention.self.value"
    qkv: str | None = None
    attention_output: str = "attention.output.dense"
    attention_norm: str | None = "attention.output.LayerNorm"
    intermediate: str = "intermediate.dense"
    output: str = "output.dense"
    output_norm: str = "output.LayerNorm"
    glu: bool = False
    shared: tuple[str, ...] = ()
    positions_offset: int = 0
    compile_blocks: tuple[str, ...] = ("attention.output", "intermediate", "output")
    token_type_ids: bool = True
    ffn_size: str = "intermediate_size"


_BERT = Layout()
#: model type -> layout. BERT's own layout is shared by its descendants.
LAYOUTS: dict[str, Layout] = {
    "bert": _BERT, "ernie": _BERT, "electra": _BERT, "data2vec-text": _BERT,
    # MobileBERT keeps BERT's paths; its bottlenecks and stacked FFNs sit beside them (ETD does not extract them)
    "mobilebert": _BERT,
    "roberta": Layout(positions_offset=2), "xlm-roberta": Layout(positions_offset=2),
    "camembert": Layout(positions_offset=2),
    "distilbert": Layout(layers="transformer.layer", query="attention.q_lin", key="attention.k_lin",
                         value="attention.v_lin", attention_output="attention.out_lin", attention_norm="sa_layer_norm",
                         intermediate="ffn.lin1", output="ffn.lin2", output_norm="output_layer_norm",
                         compile_blocks=("ffn",), token_type_ids=False, ffn_size="hidden_dim"),
    "mpnet": Layout(query="attention.attn.q", key="attention.attn.k", value="attention.attn.v",
                    attention_output="attention.attn.o", attention_norm="attention.LayerNorm",
                    shared=("encoder.relative_attention_bias",), positions_offset=2, compile_blocks=("intermediate",
                                                                                                       "output"),
                    token_type_ids=False),
    "deberta-v2": Layout(query="attention.self.query_proj", key="attention.self.key_proj",
                         value="attention.self.value_proj", shared=("encoder.rel_embeddings", "encoder.LayerNorm")),
    "modernbert": Layout(layers="layers", query=None, key=None, value=None, qkv="attn.Wqkv",
                         attention_output="attn.Wo", attention_norm="attn_norm", intermediate="mlp.Wi",
                         output="mlp.Wo", output_norm="mlp_norm", glu=True, shared=("final_norm",),
                         compile_blocks=("mlp",), token_type_ids=False),
}
SUPPORTED_MODEL_TYPES = tuple(LAYOUTS)


def layout_of(config) -> Layout:
    """The layout of a model type (from its config), or one line naming the supported types."""
    layout = LAYOUTS.get(getattr(config, "model_type", "?"))
    if layout is None:
        raise BertpressError(f"model type {getattr(config, 'model_type', '?')!r} is not supported: use a teacher of "
                             f"type {', '.join(SUPPORTED_MODEL_TYPES)}")
    return layout


@dataclass(frozen=True)
class Projection:
    """Where one of Q, K, V is read: ``module``'s output, or its ``chunk`` (0, 1, 2) of a fused ``[q | k | v]``."""

    module: nn.Linear
    chunk: int | None = None

    def select(self, output: Tensor) -> Tensor:
        return output if self.chunk is None else output.chunk(3, dim=-1)[self.chunk]


@dataclass(frozen=True)
class Anatomy:
    """Handles on the parts of one encoder model (the model itself is never modified)."""

    model: PreTrainedModel
    base: PreTrainedModel
    embeddings: nn.Module
    layers: nn.ModuleList
    has_mlm_head: bool
    layout: Layout = _BERT

    @property
    def model_type(self) -> str:
        return str(self.base.config.model_type)

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
        return self.hidden_size // self.num_heads if self.layout.qkv else (
            self.attention_projections(0)[0].module.out_features // self.num_heads)

    @property
    def layers_prefix(self) -> str:
        """Weight-name prefix of layer ``i`` in the full model's state dict, up to the index (``bert.encoder.layer.``)."""
        for name, module in self.model.named_modules():
            if module is self.layers:
                return f"{name}."
        raise BertpressError(f"the layers of {type(self.model).__name__} are not a submodule: unsupported layout")

    def shared_modules(self) -> list[nn.Module | nn.Parameter]:
        """Base-model parts every layer uses (relative-position tables, a final norm)."""
        found = []
        for path in self.layout.shared:  # optional ones (DeBERTa's rel-embedding norm) may be absent
            try:
                found.append(self.base.get_submodule(path))
            except AttributeError:
                continue
        return found

    def attention_projections(self, layer: int) -> tuple[Projection, Projection, Projection]:
        """Where the query, key and value of 0-based ``layer`` are read."""
        block, lay = self.layers[layer], self.layout
        if lay.qkv:
            fused = block.get_submodule(lay.qkv)
            return Projection(fused, 0), Projection(fused, 1), Projection(fused, 2)
        return tuple(Projection(block.get_submodule(p)) for p in (lay.query, lay.key, lay.value))  # type: ignore[return-value]


def _is_mlm_model(model: PreTrainedModel) -> bool:
    return model.get_output_embeddings() is not None and model is not model.base_model


def anatomy(model: PreTrainedModel) -> Anatomy:
    """Locate embeddings, layers and attention projections from :data:`LAYOUTS`, or say clearly that the model type
    is not supported."""
    base = model.base_model
    model_type = getattr(model.config, "model_type", "?")
    layout = layout_of(model.config)
    try:
        embeddings = base.get_submodule(layout.embeddings)
        layers = base.get_submodule(layout.layers)
        parts = Anatomy(model, base, embeddings, layers, _is_mlm_model(model), layout)
        parts.attention_projections(0)
        layer_width_parts(parts, 0)
    except (AttributeError, IndexError):
        raise BertpressError(f"{type(model).__name__} does not have the {model_type} layout bertpress knows "
                             f"({layout.layers}[i].{layout.qkv or layout.query}): check the checkpoint's model type"
                             ) from None
    return parts


# --- Width-level handles (used by ETD extraction and importance, bertpress.init) -------------------------------------


@dataclass(frozen=True)
class LayerWidthParts:
    """Every module of one layer that reads or writes the residual stream, the heads or the FFN neurons.

    The input of ``attention_output`` is the concatenated head outputs ``[B, T, heads * head_dim]``; the input of
    ``output`` is the FFN's post-activation neurons ``[B, T, neurons]``. With ``glu`` the rows of ``intermediate``
    are ``[input | gate]``, ``neurons`` each. ``attention_norm`` is ``None`` where a layer has none (ModernBERT's
    first layer).
    """

    query: Projection
    key: Projection
    value: Projection
    attention_output: nn.Linear
    attention_norm: nn.LayerNorm | None
    intermediate: nn.Linear
    output: nn.Linear
    output_norm: nn.LayerNorm
    glu: bool = False

    @property
    def neurons(self) -> int:
        return self.output.in_features


def layer_width_parts(parts: Anatomy, layer: int) -> LayerWidthParts:
    """The width-level modules of 0-based ``layer``, from the model type's :class:`Layout`."""
    block, lay = parts.layers[layer], parts.layout
    q, k, v = parts.attention_projections(layer)
    norm = block.get_submodule(lay.attention_norm) if lay.attention_norm else None
    return LayerWidthParts(q, k, v, block.get_submodule(lay.attention_output),
                           norm if isinstance(norm, nn.LayerNorm) else None, block.get_submodule(lay.intermediate),
                           block.get_submodule(lay.output), block.get_submodule(lay.output_norm), lay.glu)


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
    ("vocab_transform", "vocab_layer_norm", None),  # DistilBERT
    ("head.dense", "head.norm", None),  # ModernBERT
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
        f"masked-LM head of {type(model).__name__} has an unknown layout: use an MLM checkpoint of a supported type "
        f"({', '.join(SUPPORTED_MODEL_TYPES)}), or load the teacher with mlm_head: false"
    )


def pooler_dense(parts: Anatomy) -> nn.Linear | None:
    """The pooler's dense layer (hidden -> hidden), when the model has a pooler."""
    pooler = getattr(parts.base, "pooler", None)
    return pooler.dense if pooler is not None else None
