"""Tiny randomly initialised BERT teachers (real dropout defaults; other real layouts in ``layouts.py``), a tiny WordPiece tokenizer and a tiny corpus, built in tests."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForMaskedLM, BertConfig, BertTokenizer

WORDS = ["the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "it", "at", "from", "his", "an", "be", "this", "are", "which", "or", "has", "had", "one", "were", "first", "new", "who", "their", "also", "been", "two", "her", "they", "after", "its", "he", "she", "time", "year", "city", "world", "people", "state", "school", "war", "music", "film", "team", "game", "house", "river", "church", "small", "large", "early", "later", "north", "south", "during", "between", "under", "over", "known", "called", "became", "played", "built", "found", "made", "used", "named", "began", "wrote", "moved", "died", "born", "led", "won", "lost"]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_vocab() -> dict[str, int]:
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()-")
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    tokens = SPECIALS + chars + pieces + WORDS
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def tiny_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab=tiny_vocab(), model_max_length=64)


def tiny_config(**overrides) -> BertConfig:
    """A tiny BERT with BERT's real defaults (dropout 0.1 in hidden states and attention): only the sizes are tiny."""
    cfg = dict(vocab_size=len(tiny_vocab()), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
               intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1)
    cfg.update(overrides)
    return BertConfig(**cfg)


def save_tiny_teacher(path: Path, *, mlm: bool = True, seed: int = 0, **overrides) -> Path:
    """Save a random tiny BERT (with or without MLM head) plus its tokenizer to ``path``."""
    torch.manual_seed(seed)
    cls = AutoModelForMaskedLM if mlm else AutoModel
    model = cls.from_config(tiny_config(**overrides))
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def tiny_text(n_lines: int = 400, seed: int = 0) -> str:
    """Deterministic sentences over the tiny vocabulary, blank lines between 'documents'."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))) + ".")
        if i % 10 == 9:
            lines.append("")
    return "\n".join(lines) + "\n"
