"""Golden runs: the engine refactor (issue 11) must train the shipped objectives x initialisers to the same weights.

Each case is a 6-step distillation of the tiny MLM teacher (dropout 0.1). Its final weights are reduced to two numbers
(the sum, and a position-weighted sum that also catches permuted values) and compared with the values recorded in
``golden.json`` before the refactor, to a relative 1e-4 (another CPU's SIMD may round differently; any real change
of the step moves them far more). ``sha256`` is the exact digest on the recording machine, reported when it matches.

Re-record (only when a change of results is intended and stated): ``python tests/train/test_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from bertpress.train.run import distill

GOLDEN = Path(__file__).with_name("golden.json")

OBJECTIVES: dict[str, dict[str, Any]] = {
    "tinybert": {"name": "tinybert"},
    "tinybert-probs": {"name": "tinybert", "attention_on": "probabilities"},
    "minilm": {"name": "minilm", "query": 0.5},
    "distilbert": {"name": "distilbert", "cosine_layers": "mapping"},
}
#: the ETD cases keep the random projection and regrouped attention heads they were recorded with
#: (student.projection_init's and student.head_match's defaults changed since)
INITS: dict[str, dict[str, Any]] = {
    "random": {"init": "random"},
    "select": {"init": "select", "init_args": {"layers": [2, 4]}},
    "etd-rand": {"init": "etd-rand", "hidden_size": 16, "num_heads": 2, "intermediate_size": 32,
                 "projection_init": "random", "head_match": "regrouped"},
    "etd-impt": {"init": "etd-impt", "hidden_size": 16, "num_heads": 2, "intermediate_size": 32,
                 "init_args": {"importance_batches": 2}, "projection_init": "random",
                 "head_match": "regrouped"},
}
CASES = [(o, i) for o in OBJECTIVES for i in INITS]


def golden_recipe(out: Path, teacher: Path, corpus: Path, objective: str, init: str) -> dict[str, Any]:
    return {
        "output_dir": str(out), "seed": 11, "teacher": {"name_or_path": str(teacher)},
        "student": {"num_layers": 2, **INITS[init]}, "objective": OBJECTIVES[objective],
        "data": {"sources": [str(corpus)], "block_size": 32, "validation_fraction": 0.1,
                 "cache_dir": str(out.parent / "cache")},
        "mapping": {"strategy": "uniform"},
        "train": {"max_steps": 6, "batch_size": 4, "lr": 1e-3, "warmup_ratio": 0.2, "eval_every": 3, "save_every": 0,
                  "log_every": 2, "num_workers": 0, "mixed_precision": "no"},  # fp32 fingerprints, recorded too
    }


def fingerprint(model_dir: Path) -> dict[str, Any]:
    """Of the student of run directory ``model_dir``: ``sum``, position-weighted ``wsum`` (float64) and the exact ``sha256`` of every saved tensor, by name."""
    tensors = load_file(str(model_dir / "student" / "model.safetensors"))
    total = weighted = 0.0
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].double().flatten()
        total += float(t.sum())
        weighted += float((t * torch.sin(torch.arange(t.numel(), dtype=torch.float64))).sum())
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().numpy().tobytes())
    return {"sum": total, "wsum": weighted, "sha256": digest.hexdigest()}


@pytest.mark.parametrize(("objective", "init"), CASES, ids=[f"{o}-{i}" for o, i in CASES])
def test_refactor_keeps_the_trained_weights(objective, init, tiny_teacher_mlm, tiny_corpus, tmp_path):
    golden = json.loads(GOLDEN.read_text())[f"{objective}/{init}"]
    got = fingerprint(distill(golden_recipe(tmp_path / "run", tiny_teacher_mlm, tiny_corpus, objective,
                                            init)).output_dir)
    for key in ("sum", "wsum"):
        assert math.isclose(got[key], golden[key], rel_tol=1e-4, abs_tol=1e-3), (key, got[key], golden[key])


if __name__ == "__main__":  # re-record: python tests/train/test_golden.py
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    torch.set_num_threads(1)
    from tiny_models import save_tiny_teacher, tiny_text

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = save_tiny_teacher(root / "teacher", mlm=True)
        corpus = root / "corpus.txt"
        corpus.write_text(tiny_text())
        values = {f"{o}/{i}": fingerprint(distill(golden_recipe(root / f"{o}-{i}", teacher, corpus, o, i)).output_dir)
                  for o, i in CASES}
    GOLDEN.write_text(json.dumps(values, indent=1) + "\n")
    print(json.dumps(values, indent=1))
