"""A learnable CoNLL-2003 fixture (a word's type decides its tag) and tiny CVT settings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tiny_models import WORDS

TAGGED = {"city": "LOC", "river": "LOC", "north": "LOC", "south": "LOC", "team": "ORG", "church": "ORG",
          "school": "ORG", "music": "MISC", "film": "MISC", "he": "PER", "she": "PER"}


def write_conll(path: Path, n: int, rng: random.Random) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(n):
        previous = None
        for word in (rng.choice(WORDS) for _ in range(rng.randint(4, 12))):
            kind = TAGGED.get(word)
            tag = "O" if kind is None else ("I-" if previous == kind else "B-") + kind
            lines.append(f"{word.capitalize() if kind else word} NN B-NP {tag}")
            previous = kind
        lines.append("")
    path.write_text("\n".join(lines))


@pytest.fixture(scope="session")
def conll_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("conll_data")
    (root / "conll2003").mkdir()
    rng = random.Random(0)
    for name, n in (("train.txt", 120), ("valid.txt", 30), ("test.txt", 30)):
        write_conll(root / "conll2003" / name, n, rng)
    return root


@pytest.fixture
def cvt_settings(tmp_path, conll_dir, tiny_corpus):
    """``make(**changes)``: a tiny CVT config dict (random word vectors, small layers, a few hundred steps)."""

    def make(**changes):
        base = {"output_dir": str(tmp_path / "cvt"), "data_dir": str(conll_dir), "unlabeled": [str(tiny_corpus)],
                "max_unlabeled_sentences": 200, "embeddings": "random", "word_dim": 16, "char_dim": 8,
                "char_filters": 8, "lstm1": 24, "lstm1_proj": 12, "lstm2": 12, "head": 16, "batch_size": 16,
                "steps": 40, "warmup_steps": 10, "lr": 0.5, "eval_every": 20, "save_every": 20, "seed": 3}
        return {**base, **changes}

    return make
