"""Property-based tests (hypothesis) of recipe and mapping validation.

Any generated recipe either validates or raises a one-line-per-field :class:`BertpressError` (never another
exception); every valid recipe round-trips through YAML unchanged.
"""

import math

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bertpress.errors import BertpressError
from bertpress.objectives.mapping import validate_mapping
from bertpress.recipe import Recipe, recipe_from_dict

FIELDS = [
    "name", "seed", "output_dir", "teacher.name_or_path", "teacher.revision", "teacher.mlm_head",
    "student.num_layers", "student.hidden_size", "student.num_heads", "student.intermediate_size", "student.init",
    "student.init_args", "student.tokenizer", "data.sources", "data.block_size", "data.validation_fraction",
    "data.max_validation_blocks", "data.max_blocks", "data.mlm_probability", "data.text_field",
    "objective.name", "objective.hidden", "objective.attention", "objective.temperature", "objective.relation_heads",
    "mapping.strategy", "mapping.layers", "train.max_steps", "train.batch_size", "train.grad_accum", "train.lr",
    "train.weight_decay", "train.warmup_ratio", "train.max_grad_norm", "train.mixed_precision", "train.eval_every",
    "train.keep_checkpoints", "train.on_nonfinite", "train.freeze_embeddings", "bogus", "train.bogus", "data",
    "train", "student",
]

anything = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10_000) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["select", "random", "etd-rand", "tinybert", "minilm", "distilbert",
                                              "uniform", "explicit", "bf16", "no", "stop"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)

BASE = {"output_dir": "out", "data": {"sources": ["corpus.txt"]}}


def _set(d: dict, path: str, value) -> dict:
    node = d
    parts = path.split(".")
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return d


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), anything), max_size=5))
def test_any_recipe_validates_or_fails_cleanly(edits):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in edits:
        _set(data, path, value)
    try:
        recipe = recipe_from_dict(data)
    except BertpressError as e:
        assert str(e) and all(line.startswith("recipe: ") for line in str(e).splitlines())
        return
    assert recipe_from_dict(yaml.safe_load(recipe.to_yaml())) == recipe


valid_recipes = st.fixed_dictionaries({
    "output_dir": st.text(min_size=1, max_size=10),
    "seed": st.integers(0, 2**31),
    "student": st.fixed_dictionaries({
        "num_layers": st.integers(1, 12), "init": st.sampled_from(["random", "select", "etd-rand"])}),
    "data": st.fixed_dictionaries({
        "sources": st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3),
        "block_size": st.integers(8, 512), "validation_fraction": st.floats(0.001, 0.49)}),
    "objective": st.one_of(
        st.fixed_dictionaries({"name": st.just("tinybert"), "hidden": st.floats(0, 10), "attention": st.floats(0, 10)}),
        st.fixed_dictionaries({"name": st.just("minilm"), "relation_heads": st.integers(1, 64)}),
        st.fixed_dictionaries({"name": st.just("distilbert"), "temperature": st.floats(0.1, 10)})),
    "mapping": st.one_of(st.fixed_dictionaries({"strategy": st.sampled_from(["uniform", "last", "skip", "first"])}),
                         st.fixed_dictionaries({"layers": st.lists(st.integers(1, 24), min_size=1, max_size=12)})),
    "train": st.fixed_dictionaries({
        "max_steps": st.integers(1, 10**6), "batch_size": st.integers(1, 4096), "lr": st.floats(1e-8, 1.0),
        "mixed_precision": st.sampled_from(["no", "bf16", "fp16", "auto"]), "on_nonfinite": st.sampled_from(["stop", "skip"])}),
})


@settings(max_examples=200, deadline=None)
@given(valid_recipes)
def test_valid_recipes_round_trip(data):
    recipe = recipe_from_dict(data)
    text = recipe.to_yaml()
    again = Recipe.model_validate(yaml.safe_load(text))
    assert again == recipe and again.to_yaml() == text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-3, 15), max_size=10), st.integers(1, 8), st.integers(1, 12))
def test_mapping_validation(mapping, student_layers, teacher_layers):
    ok = len(mapping) == student_layers and all(1 <= x <= teacher_layers for x in mapping)
    try:
        assert validate_mapping(mapping, student_layers, teacher_layers) == mapping and ok
    except BertpressError as e:
        assert not ok and "\n" not in str(e)


def test_floats_survive_yaml():
    r = recipe_from_dict({**BASE, "train": {"lr": 3.3e-5, "max_grad_norm": math.inf}})
    assert recipe_from_dict(yaml.safe_load(r.to_yaml())) == r
