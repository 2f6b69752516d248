"""``train.average_with_init``: the saved student is (1 - s)·distilled + s·initial, exactly, across a resume."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from bertpress.errors import BertpressError
from bertpress.recipe import recipe_from_dict
from bertpress.train.init_average import average_with_init, snapshot
from bertpress.train.run import distill


def test_average_is_a_lerp_and_ties_are_averaged_once():
    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5))
    model[1].weight = model[0].weight  # tied, as word embeddings and an MLM decoder are
    initial = snapshot(model)
    with torch.no_grad():
        model[0].weight.add_(2.0)
        model[1].bias.fill_(4.0)
    average_with_init(model, initial, 0.25)
    assert torch.allclose(model[0].weight, initial["0.weight"] + 1.5)  # once, not twice through the tie
    assert model[1].weight is model[0].weight
    assert torch.allclose(model[1].bias, 0.75 * 4.0 + 0.25 * initial["1.bias"])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        average_with_init(model, initial, 1.5)


def _weights(run_dir):
    return load_file(str(run_dir / "student" / "model.safetensors"))


def test_saved_student_averages_distilled_and_copied_weights(tiny_recipe, tiny_teacher_mlm, tmp_path):
    common = {"student": {"num_layers": 2, "init": "select", "init_args": {"layers": [2, 4]}}}
    plain = distill(tiny_recipe(output_dir=str(tmp_path / "plain"), **common))
    averaged = distill(tiny_recipe(output_dir=str(tmp_path / "avg"), train={"average_with_init": 0.5}, **common))
    d, a = _weights(plain.output_dir), _weights(averaged.output_dir)
    teacher = AutoModel.from_pretrained(tiny_teacher_mlm).state_dict()
    # select copies the embeddings and teacher layers 2 and 4 (1-based) into student layers 0 and 1
    copied = {k: teacher[k] for k in d if k.startswith("embeddings.")}
    copied |= {k: teacher[k.replace("layer.1.", "layer.3.")] for k in d if k.startswith("encoder.layer.1.")}
    for k, init in copied.items():
        assert not torch.allclose(d[k], init), f"{k} did not train: the test could not tell the average apart"
        assert torch.allclose(a[k], 0.5 * d[k] + 0.5 * init, atol=1e-6), k
    info = averaged.summary["average_with_init"]
    assert info["share"] == 0.5 and averaged.summary["final"] == plain.summary["final"]  # same training
    assert info["valid"]["loss"] != pytest.approx(plain.summary["final"]["loss"])  # measured on the average
    card = (averaged.student_dir / "README.md").read_text()
    assert (f"- saved as 0.5 × the distilled + 0.5 × the initial weights (`train.average_with_init`); held-out loss "
            f"of the saved weights {info['valid']['loss']:.4f}") in card
    assert "saved as" not in (plain.student_dir / "README.md").read_text()


def test_average_after_resume_uses_the_initial_weights(tiny_recipe, tmp_path):
    common = {"student": {"num_layers": 2, "init": "select"}, "train": {"average_with_init": 0.3}}
    full = distill(tiny_recipe(output_dir=str(tmp_path / "full"), **common))
    cut = tiny_recipe(output_dir=str(tmp_path / "cut"), **common)
    distill(cut, stop_after=27)
    resumed = distill(cut, resume=True)
    a, b = _weights(full.output_dir), _weights(resumed.output_dir)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("change", [{"student": {"init": "random"}},
                                   {"supernet": {"space": {"layers": [1, 2], "hidden": [32], "heads": [2],
                                                           "ffn": [64]}}}])
def test_average_refused_without_copied_weights(tiny_recipe, change):
    recipe = tiny_recipe(train={"average_with_init": 0.5})
    for k, v in change.items():
        recipe[k] = {**recipe.get(k, {}), **v} if k != "supernet" else v
    with pytest.raises(BertpressError, match="average_with_init averages the distilled student"):
        recipe_from_dict(recipe)
