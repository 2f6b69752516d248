"""GLUE as sequence classification (STS-B as regression): features, and dev evaluation with the official metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn
from transformers import AutoModelForSequenceClassification

from bertpress.data.tasks.glue import TextExample
from bertpress.evaluate.finetune import INPUT_KEYS, fixed_subset, predict
from bertpress.evaluate.metrics import glue_metrics
from bertpress.evaluate.settings import FinetuneSettings
from bertpress.evaluate.tasks import TaskData


def encode(examples: Sequence[TextExample], tokenizer, max_length: int) -> list[dict[str, Any]]:
    """Token ids (and segment ids) of each sentence or pair, truncated to ``max_length``, with the label."""
    firsts = [e.text_a for e in examples]
    seconds = [e.text_b or "" for e in examples] if examples and examples[0].text_b is not None else None
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length, return_attention_mask=False)
    keys = [k for k in INPUT_KEYS if k in enc]
    return [{**{k: enc[k][i] for k in keys}, "labels": e.label} for i, e in enumerate(examples)]


class GlueRunner:
    """Fine-tunes and scores one GLUE task."""

    auto_class = AutoModelForSequenceClassification

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def model_config(self) -> dict[str, Any]:
        labels = self.data.labels
        if labels is None:
            return {"num_labels": 1, "problem_type": "regression"}
        return {"num_labels": len(labels), "problem_type": "single_label_classification",
                "id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}

    def train_features(self, tokenizer, settings: FinetuneSettings) -> list[dict[str, Any]]:
        return encode(fixed_subset(self.data.train, settings.max_train_examples), tokenizer, settings.max_length)

    def evaluate(self, model: nn.Module, tokenizer, settings: FinetuneSettings, *,
                 progress: bool = True) -> dict[str, float]:
        """Metrics on the first dev set; further dev sets (MNLI mismatched) add ``<name>_<metric>`` entries."""
        out: dict[str, float] = {}
        for i, (name, examples) in enumerate(self.data.dev.items()):
            examples = examples[:settings.max_eval_examples]
            features = encode(examples, tokenizer, settings.max_length)
            logits = np.stack(predict(model, features, batch_size=settings.eval_batch_size,
                                      pad_id=tokenizer.pad_token_id, desc=f"{self.data.info.name} {name}",
                                      progress=progress)["logits"])
            preds = logits[:, 0] if self.data.labels is None else logits.argmax(-1)
            metrics = glue_metrics(self.data.info.name, preds, [e.label for e in examples])
            out.update(metrics if i == 0 else {f"{name}_{k}": v for k, v in metrics.items() if k != "score"})
        return out
