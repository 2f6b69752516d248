"""Helpers of the search tests: recipe files and tiny GLUE-format task files."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from tiny_models import WORDS

SEARCH_DIR = Path(__file__).parent


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def _sentence(rng):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))


#: the tasks write_glue provides (the search default adds conll2003)
GLUE_TASKS = ["sst2", "mrpc", "stsb"]


def write_glue(root, seed=0):
    """SST-2, MRPC and STS-B in the GLUE TSV layout, over the tiny vocabulary."""
    rng = random.Random(seed)
    tasks = {
        "SST-2": ("sentence\tlabel\n", lambda i: f"{(s := _sentence(rng))}\t{int('won' in s.split())}"),
        "MRPC": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n",
                 lambda i: f"{rng.randint(0, 1)}\t{i}\t{i + 1}\t{_sentence(rng)}\t{_sentence(rng)}"),
        "STS-B": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n",
                  lambda i: f"{i}\tmain\tf\t2012\t{i}\tn\tn\t{_sentence(rng)}\t{_sentence(rng)}\t{rng.uniform(0, 5):.3f}"),
    }
    for task, (header, row) in tasks.items():
        folder = root / "glue" / task
        folder.mkdir(parents=True)
        for name, n in (("train.tsv", 24), ("dev.tsv", 12)):
            (folder / name).write_text(header + "".join(row(i) + "\n" for i in range(n)))
    return root
