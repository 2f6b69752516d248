"""Tiny teachers with the real layout of every supported model type: real defaults, tiny sizes.

Each config keeps what the real checkpoints of that type have and tests would otherwise miss: dropout 0.1 in
hidden states and attention, RoBERTa's position offset (``padding_idx + 1``) and single token type, ELECTRA-small's
factorised embeddings (``embedding_size`` = half the width, projected up), ERNIE's task-type fields, DistilBERT's
own field names, MPNet's shared relative-attention bias, DeBERTa-v3's disentangled attention (relative positions,
shared attention keys, no absolute positions), ModernBERT's fused QKV, GLU, rotary positions, local/global
attention, bias-free layers and dropout 0. Only the sizes are tiny. All share the tiny WordPiece tokenizer (pad id
0, so ``pad_token_id`` is 0 everywhere).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForMaskedLM, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from tiny_models import tiny_tokenizer, tiny_vocab

#: what differs from BERT's layout, per model type (sizes below are shared)
_LAYOUTS: dict[str, dict] = {
    "bert": {},
    "ernie": {"use_task_id": True, "task_type_vocab_size": 3},
    "roberta": {"type_vocab_size": 1, "max_position_embeddings": 66},
    "xlm-roberta": {"type_vocab_size": 1, "max_position_embeddings": 66},
    "camembert": {"type_vocab_size": 1, "max_position_embeddings": 66},
    "data2vec-text": {"type_vocab_size": 1, "max_position_embeddings": 66},
    "electra": {"embedding_size": 16},  # electra-small: embedding_size 128 < hidden_size 256
    # distilbert-base-uncased, with its own field names
    "distilbert": {"dim": 32, "n_layers": 4, "n_heads": 4, "hidden_dim": 64, "dropout": 0.1,
                   "attention_dropout": 0.1},
    # all-mpnet-base-v2 / mpnet-base: relative-attention bias shared by all layers, RoBERTa-style position offset
    "mpnet": {"max_position_embeddings": 66, "relative_attention_num_buckets": 32},
    # deberta-v3-*: relative positions (buckets), shared attention keys, c2p + p2c, no absolute positions
    "deberta-v2": {"relative_attention": True, "position_buckets": 16, "max_relative_positions": -1,
                   "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": ["p2c", "c2p"],
                   "position_biased_input": False, "type_vocab_size": 0},
    # ModernBERT-base: fused Wqkv, GLU, rotary, a global layer every 3rd (local window otherwise), no biases,
    # dropout 0 (its real default)
    "modernbert": {"global_attn_every_n_layers": 3, "local_attention": 16, "hidden_dropout_prob": None,
                   "attention_probs_dropout_prob": None, "cls_token_id": 2, "sep_token_id": 3, "bos_token_id": 2,
                   "eos_token_id": 3},
}
MODEL_TYPES = tuple(_LAYOUTS)
#: (config field, value) of each type's real dropout default, which the fixture keeps
REAL_DROPOUT = {"distilbert": ("dropout", 0.1), "modernbert": ("mlp_dropout", 0.0)}


def layout_config(model_type: str, **overrides) -> PretrainedConfig:
    """A tiny config of ``model_type`` with that type's real structure and the real dropout defaults."""
    cfg = dict(vocab_size=len(tiny_vocab()), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1, pad_token_id=0)
    cfg.update(_LAYOUTS[model_type])
    cfg.update(overrides)
    if model_type == "distilbert":
        cfg = {k: v for k, v in cfg.items() if k not in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                        "intermediate_size", "hidden_dropout_prob",
                                                        "attention_probs_dropout_prob")}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    return CONFIG_MAPPING[model_type](**cfg)


def save_layout_teacher(path: Path, model_type: str, *, mlm: bool = True, seed: int = 0, **overrides) -> Path:
    """Save a random tiny ``model_type`` teacher (with or without MLM head) and the tiny tokenizer to ``path``."""
    torch.manual_seed(seed)
    cls = AutoModelForMaskedLM if mlm else AutoModel
    cls.from_config(layout_config(model_type, **overrides)).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
