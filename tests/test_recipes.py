"""Shipped recipes validate, round-trip through YAML, and each recipe error is one clear line."""

from pathlib import Path

import pytest
import yaml

from bertpress.errors import BertpressError
from bertpress.recipe import load_recipe, recipe_from_dict
from bertpress.train.build import resolve_recipe

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def test_there_are_three_styles():
    assert {p.stem.split("-")[0] for p in RECIPES} >= {"distilbert", "tinybert", "minilm"}


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_shipped_recipe_valid_and_round_trips(path):
    recipe = resolve_recipe(path)  # names checked against the registries too
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
    (_with("train", mixed_precision="fp8"), "train.mixed_precision: Input should be 'no', 'fp16', 'bf16' or 'auto'"),
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
     r"student.init_args.layers: 'importance' is neither a list of teacher layers nor one of first, last, skip, "
     r"uniform"),
    (_with("data", sources=[{"dataset": "wikitext", "bogus": 1}]),
     r"^recipe: data.sources.0.bogus: Extra inputs are not permitted \(got 1\)"),
    ({**BASE, "stages": []}, "stages: List should have at least 1 item"),
    ({**BASE, "stages": [{"name": "a"}]}, "stages.0.steps: Field required"),
    ({**BASE, "stages": [{"steps": 5, "trainable": ["layer 0"]}]}, "layers are numbered from 1"),
    ({**BASE, "stages": [{"steps": 5, "trainable": ["layers 3-1"]}]}, "ends before it starts: write 'layers 1-3'"),
    ({**BASE, "stages": [{"steps": 5, "trainable": ["encoder"]}]}, r"stages.0.trainable: unknown part 'encoder'"),
    ({**BASE, "stages": [{"steps": 5}, {"steps": 5}], "train": {"max_steps": 7}},
     r"train.max_steps 7 disagrees with the stages' steps \(sum 10\)"),
    ({**BASE, "stages": [{"steps": 5, "objective": {"name": "tinybret"}}]},
     "stages.0.objective.name: unknown objective 'tinybret'"),
    ({**BASE, "stages": [{"steps": 5, "objective": {"name": "minilm", "hidden": 1}}]},
     "stages.0.objective.hidden: Extra inputs are not permitted"),
    ({**BASE, "stages": [{"steps": 5, "mapping": {"strategy": "zigzag"}}]},
     "stages.0.mapping.strategy: unknown mapping strategy 'zigzag'"),
])
def test_each_recipe_error_is_one_line(data, message):
    with pytest.raises(BertpressError, match=message) as err:
        resolve_recipe(data)
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


def test_stages_fill_their_defaults_from_the_recipe():
    r = resolve_recipe({**BASE, "train": {"lr": 3e-4, "warmup_ratio": 0.1},
                        "objective": {"name": "minilm"},
                        "stages": [{"steps": 4, "trainable": ["layer 1"], "lr": 1e-3},
                                   {"name": "all", "steps": 6, "objective": {"name": "tinybert"}}]})
    assert r.train.max_steps == 10  # the stages' sum
    one, two = r.resolved_stages()
    assert (one.name, one.steps, one.lr, one.warmup_ratio, one.objective.name, one.trainable) == (
        "stage-1", 4, 1e-3, 0.1, "minilm", ["layer 1"])
    assert (two.name, two.lr, two.objective.name, two.trainable, two.mapping.strategy) == (
        "all", 3e-4, "tinybert", ["all"], "uniform")
    assert recipe_from_dict(yaml.safe_load(r.to_yaml())) == r
    plain = resolve_recipe(BASE).resolved_stages()
    assert len(plain) == 1 and plain[0].steps == 1000 and plain[0].name == "distill"


def test_yes_no_on_off_stay_strings_in_recipes_and_overrides(tmp_path):
    """YAML 1.1 would read ``no`` as false and refuse ``mixed_precision: no``; recipes follow YAML 1.2."""
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: o\ndata: {sources: [x.txt]}\ntrain: {mixed_precision: no, compile: true}\n")
    assert load_recipe(path).train.mixed_precision == "no" and load_recipe(path).train.compile is True
    r = load_recipe(path, ["train.mixed_precision=bf16", "train.compile=false"])
    assert (r.train.mixed_precision, r.train.compile) == ("bf16", False)
    assert load_recipe(path, ["train.mixed_precision=no"]).train.mixed_precision == "no"
