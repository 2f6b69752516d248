"""Fixture task data in the shipped layout (glue/, squad/, conll2003/), written over the tiny vocabulary."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from tiny_models import WORDS

TAGGED = {"city": "LOC", "river": "LOC", "north": "LOC", "team": "ORG", "church": "ORG", "music": "MISC",
          "film": "MISC", "he": "PER", "she": "PER"}


def _sentence(rng: random.Random, n: int | None = None) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(4, 12)))


def _glue(root: Path, rng: random.Random) -> None:
    def write(task: str, header: str, row, n_train: int = 48, n_dev: int = 16) -> None:
        folder = root / "glue" / task
        folder.mkdir(parents=True)
        for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
            (folder / name).write_text(header + "".join(row(i) + "\n" for i in range(n)))

    def sst2_row(i: int) -> str:
        s = _sentence(rng)
        return f"{s}\t{int('won' in s.split())}"

    write("SST-2", "sentence\tlabel\n", sst2_row)
    write("RTE", "index\tsentence1\tsentence2\tlabel\n",
          lambda i: f"{i}\t{_sentence(rng)}\t{_sentence(rng)}\t{rng.choice(['entailment', 'not_entailment'])}")
    write("MRPC", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n",
          lambda i: f"{rng.randint(0, 1)}\t{i}\t{i + 1}\t{_sentence(rng)}\t{_sentence(rng)}")
    write("STS-B", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
          lambda i: f"{i}\tmain\tf\t2012\t{i}\tn\tn\t{_sentence(rng)}\t{_sentence(rng)}\t{rng.uniform(0, 5):.3f}")


def _squad(root: Path, rng: random.Random) -> None:
    def doc(n: int) -> dict:
        paragraphs = []
        for i in range(n):
            context = _sentence(rng, 30)
            words = context.split()
            k = rng.randrange(len(words) - 2)
            answer = " ".join(words[k:k + 2])
            start = len(" ".join(words[:k])) + (1 if k else 0)
            paragraphs.append({"context": context, "qas": [
                {"id": f"q{n}-{i}", "question": f"which {words[k]}?", "answers": [{"text": answer, "answer_start": start}]}]})
        return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}

    (root / "squad").mkdir()
    (root / "squad" / "train-v1.1.json.gz").write_bytes(gzip.compress(json.dumps(doc(24)).encode()))
    (root / "squad" / "dev-v1.1.json").write_text(json.dumps(doc(8)))


def _conll(root: Path, rng: random.Random) -> None:
    (root / "conll2003").mkdir()
    for name, n in (("train.txt", 48), ("valid.txt", 16)):
        lines = ["-DOCSTART- -X- -X- O", ""]
        for _ in range(n):
            previous = None
            for word in _sentence(rng).split():
                kind = TAGGED.get(word)
                tag = "O" if kind is None else ("I-" if previous == kind else "B-") + kind
                lines.append(f"{word} NN B-NP {tag}")
                previous = kind
            lines.append("")
        (root / "conll2003" / name).write_text("\n".join(lines))


def write_task_data(root: Path) -> Path:
    """A small data directory with SST-2, RTE, MRPC, STS-B, SQuAD v1.1 (gzipped train) and CoNLL-2003."""
    rng = random.Random(0)
    _glue(root, rng)
    _squad(root, rng)
    _conll(root, rng)
    return root
