"""A bf16 run with the teacher's Linear weights kept in bf16 (``Teacher.for_autocast``) is the run it was before."""

from __future__ import annotations

import json

import torch

from bertpress import distill
from bertpress.models.teacher import Teacher


def test_a_bf16_run_is_the_same_with_and_without_the_cast_teacher(tiny_recipe, tmp_path, monkeypatch):
    """Dropout on, bf16 autocast: per-step losses and validation of the run equal those with the fp32 teacher."""
    def run(name: str) -> list[dict]:
        recipe = tiny_recipe(output_dir=str(tmp_path / name), train={"max_steps": 6, "log_every": 1, "eval_every": 3,
                                                                      "save_every": 0, "mixed_precision": "bf16"})
        distill(recipe)
        return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    made = []
    original = Teacher.for_autocast
    monkeypatch.setattr(Teacher, "for_autocast", lambda self, dtype: made.append(dtype) or original(self, dtype))
    fast = run("fast")
    assert made == [torch.bfloat16]
    monkeypatch.setattr(Teacher, "for_autocast", lambda self, dtype: self)
    slow = run("slow")
    def losses(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")} for r in records if "loss" in r]

    assert sum(r["split"] == "train" for r in losses(fast)) == 6 and sum(r["split"] == "valid" for r in losses(fast)) >= 2
    assert losses(fast) == losses(slow)
