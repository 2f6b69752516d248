"""CoNLL-2003 NER column files: ``token POS chunk NER`` per line, blank lines between sentences.

The token is the first column and the tag the last, so two-column ``token tag`` files read too; ``-DOCSTART-``
lines are skipped. Tags must be ``O`` or ``B-``/``I-``/``E-``/``S-`` prefixed (IOB1, IOB2 or IOBES).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertpress.data.tasks.files import find_file, read_lines
from bertpress.errors import BertpressError

#: Files looked for under ``<data>/conll2003/`` per split (the first present wins; ``.gz`` is tried too).
CONLL_FILES = {"train": ("train.txt", "eng.train"), "dev": ("valid.txt", "dev.txt", "eng.testa"),
               "test": ("test.txt", "eng.testb")}


@dataclass(frozen=True)
class TaggedSentence:
    """Words and their entity tags, one tag per word."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]


def _valid_tag(tag: str) -> bool:
    return tag == "O" or (len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES")


def read_conll(path: Path) -> list[TaggedSentence]:
    """The sentences of a CoNLL column file; a line without a tag column or with a non-IOB tag is reported."""
    out: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in read_lines(path):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                out.append(TaggedSentence(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise BertpressError(f"{path}:{number}: expected 'token ... tag' columns, found {line.strip()!r}: "
                                 "fix the line (sentences are separated by blank lines)")
        if not _valid_tag(fields[-1]):
            raise BertpressError(f"{path}:{number}: tag {fields[-1]!r} is not O or B-/I-/E-/S-TYPE: "
                                 "the entity tag must be the last column")
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        out.append(TaggedSentence(tuple(tokens), tuple(tags)))
    if not out:
        raise BertpressError(f"{path}: no sentences: use a CoNLL column file")
    return out


def conll_file(data_dir: Path, split: str) -> Path:
    """The CoNLL-2003 file of ``split`` (train, dev, test) under ``data_dir/conll2003``."""
    return find_file(Path(data_dir) / "conll2003", CONLL_FILES[split], f"CoNLL-2003 {split} file")
