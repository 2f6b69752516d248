"""Tiny teachers with the real layout of every supported model type: real defaults, tiny sizes.

Each config keeps what the real checkpoints of that type have and tests would otherwise miss: dropout 0.1 in
hidden states and attention, RoBERTa's position offset (``padding_idx + 1``) and single token type, ELECTRA-small's
factorised embeddings (``embedding_size`` = half the width, projected up), ERNIE's task-type fields. Only the sizes
are tiny. All share the tiny WordPiece tokenizer (pad id 0, so ``pad_token_id`` is 0 everywhere).
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
}
MODEL_TYPES = tuple(_LAYOUTS)


def layout_config(model_type: str, **overrides) -> PretrainedConfig:
    """A tiny config of ``model_type`` with that type's real structure and the real dropout defaults."""
    cfg = dict(vocab_size=len(tiny_vocab()), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1, pad_token_id=0)
    cfg.update(_LAYOUTS[model_type])
    cfg.update(overrides)
    return CONFIG_MAPPING[model_type](**cfg)


def save_layout_teacher(path: Path, model_type: str, *, mlm: bool = True, seed: int = 0, **overrides) -> Path:
    """Save a random tiny ``model_type`` teacher (with or without MLM head) and the tiny tokenizer to ``path``."""
    torch.manual_seed(seed)
    cls = AutoModelForMaskedLM if mlm else AutoModel
    cls.from_config(layout_config(model_type, **overrides)).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
