"""Zero-shot sentence similarity: what a student kept, in seconds and without fine-tuning.

Score = Spearman correlation (x100) between the cosine similarity of the two sentences' pooled embeddings and the
gold similarity, over an STS-format dev set (STS-B here), as in the SentEval / sentence-transformers STS protocol
(Reimers & Gurevych, 2019). Pooling follows the model's (or its teacher's) sentence-transformers config
(:mod:`bertpress.models.pooling`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr
from torch import Tensor, nn
from transformers import AutoModel

from bertpress.errors import BertpressError
from bertpress.evaluate.finetune import eval_device
from bertpress.evaluate.settings import EmbeddingSettings
from bertpress.evaluate.tasks import TaskData
from bertpress.models.pooling import Pooling, model_pooling, pool


@torch.inference_mode()
def embed(model: nn.Module, tokenizer, sentences: Sequence[str], *, pooling: Pooling, max_length: int = 128,
          batch_size: int = 64) -> Tensor:
    """``[n, hidden]`` pooled last-layer embeddings of ``sentences`` (eval mode, no gradient)."""
    encoder = getattr(model, "base_model", model)
    encoder.eval()
    device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(list(sentences[start:start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = encoder(**batch).last_hidden_state.float()
        out.append(pool(hidden, batch["attention_mask"], pooling).cpu())
    return torch.cat(out)


def similarity_scores(predicted: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """Spearman (the score) and Pearson correlation x100 of predicted similarities with the gold ones."""
    p, g = np.asarray(predicted, dtype=float), np.asarray(gold, dtype=float)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(g) == 0:
        raise BertpressError(f"zero-shot similarity needs at least 2 pairs with varying scores (got {len(p)}): "
                             "use a larger STS dev set")
    spearman, pearson = 100 * float(spearmanr(p, g)[0]), 100 * float(pearsonr(p, g)[0])
    return {"spearman": spearman, "pearson": pearson, "score": spearman}


def pair_similarities(model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str]], *, pooling: Pooling,
                      max_length: int = 128, batch_size: int = 64) -> list[float]:
    """cosine(embedding(a), embedding(b)) for each pair ``(a, b)``."""
    a = embed(model, tokenizer, [x for x, _ in pairs], pooling=pooling, max_length=max_length, batch_size=batch_size)
    b = embed(model, tokenizer, [y for _, y in pairs], pooling=pooling, max_length=max_length, batch_size=batch_size)
    return F.cosine_similarity(a, b, dim=-1).tolist()


def sts_zeroshot(model: nn.Module, tokenizer, pairs: Sequence[tuple[str, str]], gold: Sequence[float], *,
                 pooling: Pooling, max_length: int = 128, batch_size: int = 64) -> dict[str, float]:
    """Similarity scores of cosine(embedding(a), embedding(b)) against ``gold`` for each pair."""
    return similarity_scores(pair_similarities(model, tokenizer, pairs, pooling=pooling, max_length=max_length,
                                               batch_size=batch_size), gold)


class EmbeddingRunner:
    """Scores a model's embeddings on an STS dev set, without training (task kind ``embedding``)."""

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def pooling(self, model_dir: Path, settings: EmbeddingSettings) -> tuple[Pooling, str]:
        """The pooling to score ``model_dir`` with, and where it comes from."""
        return (settings.pooling, "set") if settings.pooling != "auto" else model_pooling(model_dir)

    def evaluate_dir(self, model_dir: Path, tokenizer, settings: EmbeddingSettings, pooling: Pooling
                     ) -> dict[str, Any]:
        """Metrics of the model in ``model_dir`` pooled with ``pooling`` (see :meth:`pooling`)."""
        examples = next(iter(self.data.dev.values()))[:settings.max_eval_examples]
        model = AutoModel.from_pretrained(model_dir).to(eval_device())
        metrics = sts_zeroshot(model, tokenizer, [(e.text_a, e.text_b or "") for e in examples],
                               [float(e.label) for e in examples], pooling=pooling,
                               max_length=settings.max_length, batch_size=settings.eval_batch_size)
        return {"metrics": metrics, "pooling": pooling, "dev_examples": len(examples)}
