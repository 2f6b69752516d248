"""Bad inputs of ``bertpress search-mapping`` (docs/errors.md, "Layer mapping search"): one line, exit 2, and
nothing written when the check runs before the search starts."""

from pathlib import Path

import pytest
from lms_helpers import GLUE_TASKS, write_glue, write_recipe

from bertpress.cli import main
from bertpress.search.search import search_mapping

from catalogue import Catalogue, assert_one_line_error

CASES = Catalogue()
case = CASES.case


@pytest.fixture
def env(tmp_path, search_recipe, synth):
    class Env:
        root, out = tmp_path, tmp_path / "s"

        def recipe(self, **search):
            return write_recipe(tmp_path / "recipe.yaml", search_recipe(**search))

        def args(self, **search):
            return ["search-mapping", str(self.recipe(**search)), "--output-dir", str(self.out)]
    return Env()


@case("search directory already holds a search")
def _(env):
    search_mapping(env.recipe(generations=0), search_dir=env.out)
    return env.args(generations=0), r"already holds a search: pass --resume to continue it, --overwrite", True


@case("search directory holds other files")
def _(env):
    env.out.mkdir()
    (env.out / "notes.txt").write_text("mine")
    return env.args(), r"is not empty and holds no search: choose a new or empty directory", True


@case("resume with no search to resume")
def _(env):
    return [*env.args(), "--resume"], r"nothing to resume in '.*': run without --resume to start", False


@case("resume with changed fitness settings")
def _(env):
    search_mapping(env.recipe(generations=0), search_dir=env.out)
    return [*env.args(generations=0), "--resume", "--set", "search.proxy.steps=7"], \
        r"the fitness settings changed \(proxy.steps: 150 -> 7\)", True


@case("search setting out of range")
def _(env):
    return env.args(population=1), r"search.population: Input should be greater than or equal to 2", False


@case("elitism not below the population")
def _(env):
    return env.args(elitism=6), r"search.elitism 6 leaves no room for children", False


@case("evaluation budget below the baselines")
def _(env):
    return env.args(max_evaluations=2), r"search.max_evaluations 2 is less than the 3 baselines", False


@case("fitness function not importable")
def _(env):
    return env.args(fitness="nosuchmodule:score"), r"search.fitness 'nosuchmodule:score' cannot be imported", False


@case("proxy data directory missing")
def _(env):
    return env.args(fitness="proxy", proxy={"data_dir": str(env.root / "nodata")}), \
        r"data directory '.*nodata' not found: pass --data-dir or set BERTPRESS_DATA", False


@case("proxy task files missing")
def _(env):
    (env.root / "data").mkdir()
    return env.args(fitness="proxy", proxy={"data_dir": str(env.root / "data")}), \
        r"cannot load dataset 'nyu-mll/glue'|not found in", False  # no TSVs: the hub is tried, offline here


@case("unknown proxy task")
def _(env):
    return env.args(fitness="proxy", proxy={"tasks": ["sst3"]}), r"search.proxy.tasks: unknown task 'sst3'", False


@case("unknown proxy fine-tuning setting")
def _(env):
    data = write_glue(env.root / "data")
    return env.args(fitness="proxy", proxy={"data_dir": str(data), "tasks": GLUE_TASKS, "finetune_overrides": ["epoch=1"]}), \
        r"--set epoch=1: no selected task has a setting 'epoch'", False


@case("proxy batch larger than the corpus sample")
def _(env):
    data = write_glue(env.root / "data")
    return env.args(fitness="proxy", threads=1, proxy={"data_dir": str(data), "tasks": GLUE_TASKS, "batch_size": 64,
                                                  "max_blocks": 20}), \
        r"the corpus has \d+ training blocks, fewer than one global batch \(64\)", True


@case("every evaluated mapping failed")
def _(env):
    return env.args(fitness="synthetic:score", generations=0, retries=0), r"every evaluated mapping failed", True


@case("--mapping-from without a finished search")
def _(env):
    return ["distill", str(env.recipe()), "--mapping-from", str(env.root / "nothing")], \
        r"holds no finished mapping search \(no best_mapping.yaml\)", False


@pytest.mark.parametrize("name", list(CASES))
def test_bad_search_input(name, env, capsys):
    args, pattern, writes = CASES[name](env)
    before = sorted(p.name for p in env.out.iterdir()) if env.out.is_dir() else None
    code = main(args)
    assert_one_line_error(code, capsys.readouterr().err, pattern)
    if not writes:
        assert not env.out.exists() or sorted(p.name for p in env.out.iterdir()) == before, "nothing written"


def test_catalogue_documented():
    doc = (Path(__file__).parents[2] / "docs" / "errors.md").read_text()
    section = doc.split("## Layer mapping search", 1)[-1]
    for name in CASES:
        assert f"| {name} |" in section, f"docs/errors.md lacks a row for {name!r}"
