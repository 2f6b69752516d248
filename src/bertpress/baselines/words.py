"""Word-level inputs for the CVT tagger: tokenised unlabeled sentences, word and character vocabularies, and word
vectors without a download (the teacher's input embeddings, or a GloVe-format text file when the user has one).

Words are looked up lower-cased with every digit mapped to 0, characters as written (the CVT authors' rule,
``cvt_text/base/embeddings.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bertpress.data.sources import ReadStats, read_files
from bertpress.errors import BertpressError

PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIALS = (PAD, UNK, START, END)
#: characters of a word are framed by these (and ``<start>``/``<end>`` words have only them)
CHAR_SPECIALS = (PAD, UNK, "<w>", "</w>")
_TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


def normalize(word: str) -> str:
    return re.sub(r"\d", "0", word.lower())


def unlabeled_sentences(sources: Sequence[str], limit: int, min_words: int = 3, max_words: int = 100
                        ) -> list[tuple[str, ...]]:
    """Up to ``limit`` word-tokenised sentences (``min_words`` to ``max_words - 1`` words, like the authors' filter)
    from corpus sources (files, globs, gzipped WikiExtractor shards), in reading order."""
    out: list[tuple[str, ...]] = []
    stats = ReadStats()
    for source in sources:
        for line in read_files(source, "text", stats):
            if line is None:
                continue
            for sentence in _SENTENCE_END.split(line):
                words = tuple(_TOKEN.findall(sentence))
                if min_words <= len(words) < max_words:
                    out.append(words)
                    if len(out) >= limit:
                        return out
    if not out:
        raise BertpressError(f"no sentences of {min_words}+ words in {', '.join(sources)}: give text files "
                             "(unlabeled sentences for CVT)")
    return out


@dataclass(frozen=True)
class Vocabulary:
    """Word and character ids; unknown ones map to ``<unk>`` (id 1)."""

    words: tuple[str, ...]
    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_word_ids", {w: i for i, w in enumerate(self.words)})
        object.__setattr__(self, "_char_ids", {c: i for i, c in enumerate(self.chars)})

    def word_ids(self, words: Sequence[str]) -> list[int]:
        """``<start>`` + the words + ``<end>``."""
        ids = self._word_ids  # type: ignore[attr-defined]
        return [2, *(ids.get(normalize(w), 1) for w in words), 3]

    def char_ids(self, words: Sequence[str], max_word_length: int) -> list[list[int]]:
        """Per position (``<start>``, words, ``<end>``): ``<w>`` + up to ``max_word_length`` characters + ``</w>``."""
        ids = self._char_ids  # type: ignore[attr-defined]
        inner = [[ids.get(c, 1) for c in w[:max_word_length]] for w in words]
        return [[2, 3], *([2, *c, 3] for c in inner), [2, 3]]


def build_vocabulary(labeled: Iterable[Sequence[str]], unlabeled: Iterable[Sequence[str]], max_words: int,
                     max_chars: int = 300) -> Vocabulary:
    """Every (normalised) word of the labeled sentences, then the most frequent unlabeled ones up to ``max_words``;
    characters by frequency over both (ties broken by the character)."""
    labeled, unlabeled = list(labeled), list(unlabeled)
    known = sorted({normalize(w) for s in labeled for w in s})
    counts = Counter(normalize(w) for s in unlabeled for w in s)
    seen = set(known)
    extra = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if w not in seen]
    words = (*SPECIALS, *known, *extra)[:max(max_words, len(SPECIALS) + len(known))]
    chars = Counter(c for s in (*labeled, *unlabeled) for w in s for c in w)
    top = [c for c, _ in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))[:max_chars]]
    return Vocabulary(tuple(words), (*CHAR_SPECIALS, *top))


def glove_vectors(path: Path, words: Sequence[str]) -> tuple[torch.Tensor, int]:
    """Rows of a GloVe-format text file (``word v1 ... vd`` per line) for ``words`` (zeros where it has none), and
    how many words it covered."""
    path = Path(path)
    if not path.is_file():
        raise BertpressError(f"embeddings file {str(path)!r} does not exist: give a GloVe-format text file, or "
                             "embeddings: teacher")
    index = {w: i for i, w in enumerate(words)}
    table: np.ndarray | None = None
    found = 0
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if table is None:
                table = np.zeros((len(words), len(parts) - 1), dtype=np.float32)
            if len(parts) - 1 != table.shape[1]:
                raise BertpressError(f"{path}:{number}: {len(parts) - 1} values, the file's first line has "
                                     f"{table.shape[1]}: not a GloVe-format text file")
            i = index.get(normalize(parts[0]))
            if i is not None and i >= len(SPECIALS) and not table[i].any():
                table[i] = np.asarray(parts[1:], dtype=np.float32)
                found += 1
    if table is None or found == 0:
        raise BertpressError(f"{path}: no word of the vocabulary has a vector: check the file (GloVe text format)")
    return torch.from_numpy(table), found


@torch.no_grad()
def teacher_vectors(teacher_dir: str, words: Sequence[str]) -> tuple[torch.Tensor, int]:
    """Each word's vector as the mean of the teacher's input embeddings of its word pieces (specials: zeros)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    table = AutoModel.from_pretrained(teacher_dir).get_input_embeddings().weight.detach().float()
    out = torch.zeros(len(words), table.shape[1])
    pieces = tokenizer(list(words[len(SPECIALS):]), add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(pieces, start=len(SPECIALS)):
        if ids:
            out[i] = table[ids].mean(0)
    return out, sum(1 for p in pieces if p)


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Epoch ``epoch``'s shuffled batches of similar lengths (sorted inside groups of 50 batches), a function of
    ``(seed, epoch)`` only, so a resumed run continues the same sequence."""
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    group = 50 * batch_size
    chunks = []
    for start in range(0, len(order), group):
        chunk = order[start:start + group]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        chunks += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]
