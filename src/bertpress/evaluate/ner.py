"""CoNLL-2003 NER as token classification: each word is labelled through its first sub-word token.

Later sub-words and special tokens are ignored by the loss; words cut off by ``max_length`` are predicted ``O`` so
that the entity-level F1 is always computed over every gold word.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoModelForTokenClassification

from bertpress.data.tasks.conll import TaggedSentence
from bertpress.errors import BertpressError
from bertpress.evaluate.finetune import IGNORE, INPUT_KEYS, fixed_subset, predict
from bertpress.evaluate.metrics import ner_metrics
from bertpress.evaluate.settings import FinetuneSettings
from bertpress.evaluate.tasks import TaskData


def encode(sentences: Sequence[TaggedSentence], tokenizer, max_length: int,
           label_ids: dict[str, int]) -> tuple[list[dict[str, Any]], list[list[int | None]]]:
    """Features with first-sub-word labels (unknown tags ignored), and each feature's token -> word index."""
    if not getattr(tokenizer, "is_fast", False):
        raise BertpressError("NER needs a fast tokenizer (word ids): save the model with a tokenizer.json")
    enc = tokenizer([list(s.tokens) for s in sentences], is_split_into_words=True, truncation=True,
                    max_length=max_length, return_attention_mask=False)
    keys = [k for k in INPUT_KEYS if k in enc]
    features, word_ids = [], []
    for i, sentence in enumerate(sentences):
        words = enc.word_ids(i)
        labels, previous = [], None
        for w in words:
            first = w is not None and w != previous
            labels.append(label_ids.get(sentence.tags[w], IGNORE) if first else IGNORE)
            previous = w
        features.append({**{k: enc[k][i] for k in keys}, "labels": labels})
        word_ids.append(words)
    return features, word_ids


class NerRunner:
    """Fine-tunes and scores CoNLL-2003 NER."""

    auto_class = AutoModelForTokenClassification

    def __init__(self, data: TaskData) -> None:
        self.data = data
        self.labels = data.labels or ()
        self.label_ids = {t: i for i, t in enumerate(self.labels)}

    def model_config(self) -> dict[str, Any]:
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)),
                "label2id": dict(self.label_ids)}

    def train_features(self, tokenizer, settings: FinetuneSettings) -> list[dict[str, Any]]:
        sentences = fixed_subset(self.data.train, settings.max_train_examples)
        return encode(sentences, tokenizer, settings.max_length, self.label_ids)[0]

    def evaluate(self, model: nn.Module, tokenizer, settings: FinetuneSettings, *,
                 progress: bool = True) -> dict[str, float]:
        """Metrics on the dev set; the test set, when there is one, adds ``test_<metric>`` entries."""
        def tag(sentences: Sequence[TaggedSentence], split: str) -> list[list[str]]:
            features, word_ids = encode(sentences, tokenizer, settings.max_length, self.label_ids)
            logits = predict(model, features, batch_size=settings.eval_batch_size, pad_id=tokenizer.pad_token_id,
                             token_level=True, desc=f"{self.data.info.name} {split}", progress=progress)["logits"]
            predicted = []
            for sentence, words, scores in zip(sentences, word_ids, logits, strict=True):
                tags = ["O"] * len(sentence.tokens)
                previous = None
                for position, w in enumerate(words):
                    if w is not None and w != previous:
                        tags[w] = self.labels[int(scores[position].argmax())]
                    previous = w
                predicted.append(tags)
            return predicted

        return score_splits(self.data, settings, tag)


def score_splits(data: TaskData, settings: FinetuneSettings,
                 tag: Callable[[Sequence[TaggedSentence], str], list[list[str]]]) -> dict[str, float]:
    """seqeval metrics of ``tag``'s predictions on each evaluation split: the first (dev) as they are, later ones
    (test) prefixed with the split's name."""
    out: dict[str, float] = {}
    for i, (split, sentences) in enumerate(data.dev.items()):
        sentences = sentences[:settings.max_eval_examples]
        metrics = ner_metrics([s.tags for s in sentences], tag(sentences, split))
        out.update(metrics if i == 0 else {f"{split}_{k}": v for k, v in metrics.items() if k != "score"})
    return out


def evaluate_tagger(tagger_dir: Path, data: TaskData, settings: FinetuneSettings) -> dict[str, Any]:
    """A trained tagger (``bertpress cvt``) on the dev (and test) set, scored like fine-tuned encoders; its training cost is
    its own (no fine-tuning here), in the result's run record."""
    from bertpress.baselines.cvt import CVTTagger
    from bertpress.evaluate.suite import summarise

    tagger = CVTTagger.load(tagger_dir)
    start = time.perf_counter()
    metrics = score_splits(data, settings, lambda sentences, _: tagger.tag([s.tokens for s in sentences]))
    record = {"lr": None, "seed": tagger.config.seed, "metrics": metrics, "train_seconds": tagger.info["train_seconds"],
              "eval_seconds": time.perf_counter() - start, "steps": tagger.info["steps"]}
    return {"task": data.info.name, "lr": None, "grid": {}, "settings": settings.model_dump(), **summarise([record]),
            "runs": [record]}
