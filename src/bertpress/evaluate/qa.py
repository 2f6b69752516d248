"""SQuAD as span extraction: sliding windows over long contexts, n-best span decoding, the v2.0 null answer.

Each question becomes one or more windows ``[CLS] question [SEP] context part [SEP]``; consecutive windows over
one context share ``doc_stride`` tokens (the tokenizer's ``stride``). Training targets the answer's first and last
token, or ``[CLS]`` when the answer is not inside the window (or the question has none). Decoding takes the best
``start + end`` logit sum over the ``n_best`` starts and ends of every window, keeping spans inside the context
and at most ``max_answer_length`` tokens long; for v2.0 the question gets "no answer" when the best null score
(``[CLS]`` start + end) beats it by more than ``null_threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn
from transformers import AutoModelForQuestionAnswering

from bertpress.data.tasks.squad import SquadExample
from bertpress.errors import BertpressError
from bertpress.evaluate.finetune import INPUT_KEYS, fixed_subset, predict
from bertpress.evaluate.metrics import squad_v1_metrics, squad_v2_metrics
from bertpress.evaluate.settings import SquadSettings
from bertpress.evaluate.tasks import TaskData


@dataclass
class Windows:
    """Tokenised windows: model features, and for each window its example, the character span of each token
    (``None`` outside the context) and which tokens belong to the context."""

    features: list[dict[str, Any]]
    example: list[int]
    offsets: list[list[tuple[int, int] | None]]
    in_context: list[np.ndarray]


def windows(examples: Sequence[SquadExample], tokenizer, settings: SquadSettings) -> Windows:
    """Sliding windows over each example's context, with training targets (answer token span or ``[CLS]``)."""
    if not getattr(tokenizer, "is_fast", False):
        raise BertpressError("SQuAD needs a fast tokenizer (character offsets): save the model with a tokenizer.json")
    if settings.doc_stride >= settings.max_length:
        raise BertpressError(f"SQuAD doc_stride {settings.doc_stride} must be below max_length "
                             f"{settings.max_length}: lower doc_stride")
    try:
        enc = tokenizer([e.question.lstrip() for e in examples], [e.context for e in examples],
                        truncation="only_second", max_length=settings.max_length, stride=settings.doc_stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True, return_attention_mask=False)
    except Exception as e:  # the tokenizers backend raises a bare Exception when a question leaves no room
        raise BertpressError(f"SQuAD windows of {settings.max_length} tokens with stride {settings.doc_stride} do "
                             f"not fit ({str(e)[:120]}): raise max_length or lower doc_stride") from None
    keys = [k for k in INPUT_KEYS if k in enc]
    out = Windows([], [], [], [])
    for w, offsets in enumerate(enc["offset_mapping"]):
        ex = int(enc["overflow_to_sample_mapping"][w])
        seq = enc.sequence_ids(w)
        context = [tuple(o) if s == 1 else None for o, s in zip(offsets, seq, strict=True)]
        start = end = 0
        if examples[ex].answers:
            text, first_char = examples[ex].answers[0]
            last_char = first_char + len(text)
            inside = [i for i, o in enumerate(context) if o is not None and o[0] < last_char and o[1] > first_char]
            first_tok, last_tok = seq.index(1), len(seq) - 1 - seq[::-1].index(1)
            if inside and offsets[first_tok][0] <= first_char and offsets[last_tok][1] >= last_char:
                start, end = inside[0], inside[-1]
        out.features.append({**{k: enc[k][w] for k in keys}, "start_positions": start, "end_positions": end})
        out.example.append(ex)
        out.offsets.append(context)
        out.in_context.append(np.array([o is not None for o in context]))
    return out


def decode(examples: Sequence[SquadExample], win: Windows, start_logits: Sequence[np.ndarray],
           end_logits: Sequence[np.ndarray], settings: SquadSettings) -> tuple[dict[str, str], dict[str, float]]:
    """Best non-null answer text per question id, and the null-score margin (null minus best span score)."""
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    k = settings.n_best
    for w, ex in enumerate(win.example):
        s_log, e_log, offsets = start_logits[w], end_logits[w], win.offsets[w]
        null[ex] = min(null.get(ex, np.inf), float(s_log[0] + e_log[0]))
        starts, ends = np.argsort(s_log)[::-1][:k], np.argsort(e_log)[::-1][:k]
        s, e = np.meshgrid(starts, ends, indexing="ij")
        s, e = s.ravel(), e.ravel()
        ok = win.in_context[w][s] & win.in_context[w][e] & (e >= s) & (e - s + 1 <= settings.max_answer_length)
        if not ok.any():
            continue
        scores = s_log[s] + e_log[e]
        pick = np.flatnonzero(ok)[np.argmax(scores[ok])]
        if ex not in best or scores[pick] > best[ex][0]:
            best[ex] = (float(scores[pick]), offsets[s[pick]][0], offsets[e[pick]][1])
    answers, margins = {}, {}
    for i, example in enumerate(examples):
        score, first, last = best.get(i, (-np.inf, 0, 0))
        answers[example.id] = example.context[first:last]
        margins[example.id] = null.get(i, np.inf) - score
    return answers, margins


class SquadRunner:
    """Fine-tunes and scores SQuAD v1.1 (``squad``) or v2.0 (``squad2``)."""

    auto_class = AutoModelForQuestionAnswering

    def __init__(self, data: TaskData) -> None:
        self.data = data
        self.v2 = data.info.name == "squad2"

    def model_config(self) -> dict[str, Any]:
        return {}

    def train_features(self, tokenizer, settings: SquadSettings) -> list[dict[str, Any]]:
        return windows(fixed_subset(self.data.train, settings.max_train_examples), tokenizer, settings).features

    def evaluate(self, model: nn.Module, tokenizer, settings: SquadSettings, *,
                 progress: bool = True) -> dict[str, float]:
        examples = self.data.dev["dev"][:settings.max_eval_examples]
        win = windows(examples, tokenizer, settings)
        out = predict(model, win.features, batch_size=settings.eval_batch_size, pad_id=tokenizer.pad_token_id,
                      outputs=("start_logits", "end_logits"), token_level=True, desc=f"{self.data.info.name} dev",
                      progress=progress)
        answers, margins = decode(examples, win, out["start_logits"], out["end_logits"], settings)
        gold = {e.id: [a for a, _ in e.answers] for e in examples}
        if not self.v2:
            return squad_v1_metrics(gold, answers)
        final = {q: "" if margins[q] > settings.null_threshold else a for q, a in answers.items()}
        return squad_v2_metrics(gold, final, na_scores=margins, best_non_null=answers)
