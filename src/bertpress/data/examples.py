"""Sentence-level transfer data: one example per sentence (or per pair of consecutive sentences) instead of packed
blocks, for objectives that read a task head's output on whole inputs (XtremeDistil's transfer set).

Examples are ``tokenizer(a[, b])`` with the tokenizer's own special tokens (``[CLS] a [SEP] b [SEP]``, ``<s> a
</s></s> b </s>``...), truncated to the block size and padded with the pad token to it, so they are stored, cached,
memory-mapped and split exactly like packed blocks. Sentences are cut at ``.!?`` followed by white space and after
the CJK full stops ``。！？``, which works for scripts that end sentences with them; other text keeps one line (a
WikiExtractor paragraph) per sentence. A source ``{task: NAME}`` adds that task's training inputs (without labels)
as they are: single sentences, or the pairs of a pair task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from bertpress.data.tasks.conll import conll_file, read_conll
from bertpress.data.tasks.files import default_data_dir, file_identity, resolve_data_dir
from bertpress.data.tasks.glue import GLUE_TASKS, glue_tsv_files, read_glue_tsv
from bertpress.errors import BertpressError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
#: examples tokenised per call (and rows written per chunk)
_BATCH = 2000
#: tasks whose training inputs can be added to a transfer set (GLUE-format and CoNLL-2003)
INPUT_TASKS = (*GLUE_TASKS, "conll2003")


def split_sentences(text: str) -> list[str]:
    """The sentences of one line of text (see the module docstring for the rule)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def text_units(segments: Iterable[str | None], unit: str) -> Iterator[tuple[str, str | None]]:
    """``(sentence, None)`` per sentence, or for ``unit='pairs'`` ``(s_1, s_2), (s_3, s_4), ...`` of consecutive
    sentences within one document (``None`` in ``segments`` ends a document; an odd last sentence is dropped)."""
    pending: str | None = None
    for seg in segments:
        if seg is None:
            pending = None
            continue
        for sentence in split_sentences(seg):
            if unit == "sentences":
                yield sentence, None
            elif pending is None:
                pending = sentence
            else:
                yield pending, sentence
                pending = None


def task_source_dir(source) -> Path:
    return resolve_data_dir(source.data_dir) if source.data_dir else default_data_dir()


def task_files(source) -> list[Path]:
    """The training file(s) of a ``{task: NAME}`` source."""
    data_dir = task_source_dir(source)
    if source.task == "conll2003":
        return [conll_file(data_dir, "train")]
    return [glue_tsv_files(data_dir, GLUE_TASKS[source.task])["train"]]


def task_identity(source) -> list:
    return [source.task, [file_identity(p) for p in task_files(source)]]


def task_inputs(source) -> Iterator[tuple[str, str | None]]:
    """The training inputs of a ``{task: NAME}`` source (CoNLL sentences as their words joined by spaces)."""
    path = task_files(source)[0]
    if source.task == "conll2003":
        for s in read_conll(path):
            yield " ".join(s.tokens), None
        return
    for e in read_glue_tsv(path, GLUE_TASKS[source.task]):
        yield e.text_a, e.text_b


def encode_units(units: Iterable[tuple[str, str | None]], tokenizer, block_size: int) -> Iterator[np.ndarray]:
    """``int32 [k, block_size]`` rows of tokenised, truncated, padded examples, a chunk at a time (singles and pairs
    may mix; examples with no content token are dropped)."""
    pad = tokenizer.pad_token_id
    if pad is None:
        raise BertpressError("the tokenizer has no pad token: sentence-level data (data.unit) needs one to pad "
                             "examples; use a BERT-family tokenizer or set data.unit: blocks")
    specials = np.asarray(sorted(set(tokenizer.all_special_ids)), dtype=np.int32)

    def flush(batch: list[tuple[str, str | None]]) -> np.ndarray:
        rows = []
        for pair in (True, False):
            part = [u for u in batch if (u[1] is not None) == pair]
            if not part:
                continue
            enc = tokenizer([a for a, _ in part], [b for _, b in part] if pair else None, truncation=True,
                            max_length=block_size, padding="max_length", return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)["input_ids"]
            rows.append(np.asarray(enc, dtype=np.int32).reshape(-1, block_size))
        out = np.concatenate(rows)
        return out[np.isin(out, specials, invert=True).any(1)]

    batch: list[tuple[str, str | None]] = []
    for u in units:
        batch.append(u)
        if len(batch) >= _BATCH:
            yield flush(batch)
            batch = []
    if batch:
        yield flush(batch)
