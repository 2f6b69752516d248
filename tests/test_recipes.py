"""Shipped recipes validate, round-trip through YAML, and each recipe error is one clear line."""

from pathlib import Path

import pytest
import yaml

from bertpress.errors import BertpressError
from bertpress.recipe import load_recipe, recipe_from_dict

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_there_are_three_styles():
    assert {p.stem.split("-")[0] for p in RECIPES} >= {"distilbert", "tinybert", "minilm"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipe_valid_and_round_trips(path):
    recipe = load_recipe(path)
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe


def test_overrides_apply_and_validate(tmp_path):
    path = RECIPES[0]
    r = load_recipe(path, ["train.max_steps=7", "student.num_layers=2", "data.sources=[a.txt, b.txt]"])
    assert r.train.max_steps == 7 and r.student.num_layers == 2 and r.data.sources == ["a.txt", "b.txt"]
    with pytest.raises(BertpressError, match=r"train.max_steps: Input should be greater than 0 \(got -1\)"):
        load_recipe(path, ["train.max_steps=-1"])
    with pytest.raises(BertpressError, match="is not KEY=VALUE"):
        load_recipe(path, ["train.max_steps"])


BASE = {"output_dir": "out", "data": {"sources": ["x.txt"]}}


def _with(section, **fields):
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    d[section] = {**d.get(section, {}), **fields}
    return d


@pytest.mark.parametrize(("data", "message"), [
    ({"data": {"sources": ["x"]}}, "output_dir: Field required: add this field"),
    ({"output_dir": "o"}, "data: Field required"),
    (_with("data", sources=[]), "data.sources: List should have at least 1 item"),
    (_with("train", lr=0), r"train.lr: Input should be greater than 0 \(got 0\): use a larger value"),
    (_with("train", batch_size=-4), r"train.batch_size: Input should be greater than 0 \(got -4\)"),
    (_with("train", max_steps=0), "train.max_steps: Input should be greater than 0"),
    (_with("train", batch_size="big"), "train.batch_size: Input should be a valid integer"),
    (_with("train", mixed_precision="fp8"), "train.mixed_precision: Input should be 'no', 'fp16' or 'bf16'"),
    (_with("train", lrr=1), r"train.lrr: Extra inputs are not permitted \(got 1\): remove it or fix its spelling"),
    (_with("objective", name="tinybret"), "objective.name: unknown objective 'tinybret': choose one of"),
    (_with("objective", name="tinybert", hiden=1.0), "objective.hiden: Extra inputs are not permitted"),
    (_with("objective", name="minilm", relation_heads=0), "objective.relation_heads: Input should be greater than 0"),
    (_with("student", init="extract"), "student.init: unknown initialiser 'extract': choose one of"),
    (_with("student", init="random", init_args={"layers": [1]}), "initialiser 'random' takes no options"),
    (_with("student", num_layers=0), "student.num_layers: Input should be greater than 0"),
    (_with("mapping", strategy="zigzag"), "mapping.strategy: unknown mapping strategy 'zigzag'"),
    (_with("mapping", strategy="explicit"), "needs mapping.layers"),
    (_with("mapping", strategy="uniform", layers=[1, 2]), "mapping.layers is only read with strategy 'explicit'"),
    (_with("data", block_size=4), "data.block_size: Input should be greater than or equal to 8"),
    (_with("data", validation_fraction=0.9), "data.validation_fraction: Input should be less than 0.5"),
    (["not", "a", "mapping"], "expected a mapping of sections"),
    (_with("student", init="etd-rand", init_args={"layers": "importance"}),
     r"student.init_args.layers: Input should be a valid list, or 'uniform' \(got 'importance'\)"),
    (_with("data", sources=[{"dataset": "wikitext", "bogus": 1}]),
     r"^recipe: data.sources.0.bogus: Extra inputs are not permitted \(got 1\)"),
])
def test_each_recipe_error_is_one_line(data, message):
    with pytest.raises(BertpressError, match=message) as err:
        recipe_from_dict(data)
    assert "\n" not in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("output_dir: x\ndata:\n  sources: [a\n")
    with pytest.raises(BertpressError, match=r"invalid YAML at line \d+"):
        load_recipe(bad)
    with pytest.raises(BertpressError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_reference_doc_in_sync():
    from bertpress.recipe_reference import recipe_reference

    doc = Path(__file__).parents[1] / "docs" / "recipes.md"
    assert doc.read_text() == recipe_reference(), "regenerate: bertpress recipe reference > docs/recipes.md"
