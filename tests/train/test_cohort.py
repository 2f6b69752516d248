"""A cohort: several students, one teacher forward per batch, each bit for bit its solo run (dropout on)."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from bertpress.errors import BertpressError
from bertpress.train.cohort import distill_cohort
from bertpress.train.run import distill


def _weights(out):
    return load_file(str(out / "student" / "model.safetensors"))


def _members(tiny_recipe, tmp_path, prefix):
    # different objectives, mappings, inits, stages and lengths; same teacher, data, seed and batch size
    return [
        tiny_recipe(output_dir=str(tmp_path / f"{prefix}-a"), objective={"name": "distilbert"}),
        tiny_recipe(output_dir=str(tmp_path / f"{prefix}-b"), student={"init": "select"},
                    objective={"name": "minilm"}, mapping={"strategy": "last"}),
        tiny_recipe(output_dir=str(tmp_path / f"{prefix}-c"), train={"max_steps": 25},
                    mapping={"layers": [1, 3]}),
        _staged(tiny_recipe(output_dir=str(tmp_path / f"{prefix}-d"))),
    ]


def _staged(recipe):
    recipe["train"] = {k: v for k, v in recipe["train"].items() if k != "max_steps"}
    recipe["stages"] = [{"name": "first", "steps": 10, "trainable": ["layer 1", "projections"]},
                        {"name": "rest", "steps": 20, "lr": 5e-4}]
    return recipe


def test_each_member_equals_its_solo_run_with_one_teacher_forward_per_batch(tiny_recipe, tmp_path):
    solo = [distill(r) for r in _members(tiny_recipe, tmp_path, "solo")]
    cohort = distill_cohort(_members(tiny_recipe, tmp_path, "cohort"))
    assert AutoConfig.from_pretrained(cohort[0].student_dir).hidden_dropout_prob == 0.1  # dropout is on
    for alone, together in zip(solo, cohort, strict=True):
        a, b = _weights(alone.output_dir), _weights(together.output_dir)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), together.output_dir.name
        assert together.summary["final"] == alone.summary["final"]
        assert together.summary["steps"] == alone.summary["steps"]
    # 40 + 40 + 25 + 30 member batches; b, c and d read the same unmasked batches (40 forwards for the three),
    # a's distilbert objective masks its batches for MLM, so the teacher sees other inputs (40 more)
    summary = json.loads((cohort[0].output_dir / "bertpress.json").read_text())
    assert summary["cohort"] == {"members": 4, "teacher_forwards": 80, "member_batches": 135, "member": 1}
    assert [r.summary["steps"] for r in cohort] == [40, 40, 25, 30]


def test_resumed_cohort_equals_uninterrupted_solo_runs(tiny_recipe, tmp_path):
    solo = [distill(r) for r in _members(tiny_recipe, tmp_path, "solo")[:2]]
    cut = _members(tiny_recipe, tmp_path, "cut")[:2]
    for recipe in cut:
        distill(recipe, stop_after=27)  # checkpoint at step 20, 7 steps lost
    resumed = distill_cohort(cut, resume=True)
    for alone, together in zip(solo, resumed, strict=True):
        a, b = _weights(alone.output_dir), _weights(together.output_dir)
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("change", "field"), [
    ({"seed": 4}, "seed"), ({"train": {"batch_size": 4}}, "train.batch_size"),
    ({"data": {"block_size": 16}}, "data"),
])
def test_members_that_cannot_share_the_teacher_are_refused_before_anything_is_written(tiny_recipe, tmp_path,
                                                                                      change, field):
    a = tiny_recipe(output_dir=str(tmp_path / "a"))
    b = tiny_recipe(output_dir=str(tmp_path / "b"), **change)
    with pytest.raises(BertpressError, match=rf"member 2 .* differs from member 1 in {field}:"):
        distill_cohort([a, b])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_same_output_dir_and_single_member_are_refused(tiny_recipe, tmp_path):
    with pytest.raises(BertpressError, match="two cohort members write"):
        distill_cohort([tiny_recipe(), tiny_recipe(objective={"name": "minilm"})])
    with pytest.raises(BertpressError, match="at least 2 recipes"):
        distill_cohort([tiny_recipe()])
    # where the corpus cache lives does not change the batches: allowed
    distill_cohort([tiny_recipe(output_dir=str(tmp_path / "x"), train={"max_steps": 2}),
                    tiny_recipe(output_dir=str(tmp_path / "y"), train={"max_steps": 2},
                                data={"cache_dir": str(tmp_path / "other-cache")})])
