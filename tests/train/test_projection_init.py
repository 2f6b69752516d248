"""student.projection_init extracted: the learned width projection of an ETD-extracted student starts as the map
that puts each student dim back on the teacher dim it was extracted from."""

import json

import pytest
import torch

from bertpress.errors import BertpressError
from bertpress.objectives.base import selection_projection_
from bertpress.train.run import distill, prepare_run

NARROW = {"num_layers": 2, "hidden_size": 16, "num_heads": 2, "intermediate_size": 32, "init": "etd-impt"}
RANDOM_W = {**NARROW, "projection_init": "random"}


def test_selection_projection_places_each_dim():
    proj = torch.nn.Linear(3, 5)
    selection_projection_(proj, [4, 0, 2])
    h = torch.tensor([[1.0, 2.0, 3.0]])
    assert proj(h).tolist() == [[2.0, 0.0, 3.0, 0.0, 1.0]]
    for bad in ([4, 0], [4, 4, 0], [5, 0, 1]):
        with pytest.raises(BertpressError, match="extraction plan does not fit"):
            selection_projection_(torch.nn.Linear(3, 5), bad)


def _start_loss(recipe) -> float:
    out = distill(recipe, overwrite=True).output_dir
    valid = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"valid"' in x]
    return valid[0]["loss"], json.loads((out / "bertpress.json").read_text())["init"]


def test_extracted_projection_starts_where_extraction_left_off(tiny_recipe):
    train = {"max_steps": 1, "eval_every": 1, "save_every": 0}
    prepared = prepare_run(tiny_recipe(student={**NARROW, "projection_init": "extracted"}, train=train),
                           overwrite=True)
    dims = prepared.plan["hidden_dims"]
    w = prepared.run.stages[0].objective.proj.weight
    assert w.shape == (32, 16) and prepared.plan["projection"] == "extracted"
    assert torch.equal(w[dims, torch.arange(16)], torch.ones(16)) and w.sum() == 16
    extracted, plan = _start_loss(tiny_recipe(student={**NARROW, "projection_init": "extracted"}, train=train))
    random_w, plan_r = _start_loss(tiny_recipe(student=RANDOM_W, train=train))
    assert plan["projection"] == "extracted" and "projection" not in plan_r
    assert extracted < 0.5 * random_w, (extracted, random_w)


def test_no_extracted_dims_no_change(tiny_recipe):
    prepared = prepare_run(tiny_recipe(student={"num_layers": 2, "init": "select", "projection_init": "extracted"}),
                           overwrite=True)
    assert isinstance(prepared.run.stages[0].objective.proj, torch.nn.Identity)
    assert "projection" not in prepared.plan
