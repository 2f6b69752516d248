"""The search with a cheap synthetic fitness: finds the clear optimum, determinism, cache, resume, outputs."""

import json

import pytest
import yaml

from bertpress.errors import BertpressError
from bertpress.search.report import read_best_mapping
from bertpress.search.search import search_mapping
from bertpress.search.space import SearchSpace


def _trajectory(result):
    s = result.summary
    return (s["best"]["mapping"], s["best"]["fitness"]), [(g["new"], g["population"], g["best"])
                                                          for g in s["generations"]]


def test_search_finds_the_clearly_best_mapping(search_recipe, synth, tmp_path):
    result = search_mapping(search_recipe(), search_dir=tmp_path / "s")
    s = result.summary
    assert result.best_mapping == list(synth.target), s["generations"]
    assert s["best"]["fitness"] == 1.0 and s["best"]["origin"] == "offspring"
    assert {n: b["mapping"] for n, b in s["baselines"].items()} == {"uniform": [2, 4, 6], "last": [4, 5, 6],
                                                                     "skip": [1, 3, 5]}
    assert all(m > 0 for m in s["margin_over_baselines"].values())
    calls = synth.calls()
    assert calls[:3] == [[2, 4, 6], [4, 5, 6], [1, 3, 5]], "baselines first"
    assert len(calls) == len({tuple(c) for c in calls}) == s["evaluations"]["distinct"], "never evaluated twice"
    assert s["space"]["size"] == 56 and len(s["generations"]) == 6
    best_so_far = [g["best"] for g in s["generations"]]
    assert best_so_far == sorted(best_so_far)
    assert read_best_mapping(tmp_path / "s") == list(synth.target)


def test_outputs(search_recipe, synth, tmp_path):
    out = tmp_path / "s"
    result = search_mapping(search_recipe(generations=1), search_dir=out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best_mapping.yaml", "evaluations.jsonl", "search.json", "search.md", "search.png",
                     "state.json", "tensorboard"], names
    snippet = yaml.safe_load((out / "best_mapping.yaml").read_text())
    assert snippet == {"mapping": {"strategy": "explicit", "layers": result.best_mapping}}
    lines = [json.loads(x) for x in (out / "evaluations.jsonl").read_text().splitlines()]
    assert len(lines) == result.summary["evaluations"]["distinct"]
    assert all({"mapping", "fitness", "seconds", "status", "attempts", "generation", "origin"} <= r.keys()
               for r in lines)
    md = (out / "search.md").read_text()
    assert "uniform" in md and "**searched**" in md and "56 mappings" in md
    assert (out / "search.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "search.json").read_text())["best"]["mapping"] == result.best_mapping
    assert not list(out.glob(".*.tmp")), "no temporary files left"


@pytest.mark.parametrize("kind", ["monotone", "free"])
def test_same_seed_same_search(search_recipe, synth, tmp_path, kind):
    a = search_mapping(search_recipe(space=kind), search_dir=tmp_path / "a")
    b = search_mapping(search_recipe(space=kind), search_dir=tmp_path / "b")
    c = search_mapping(search_recipe(space=kind, seed=2), search_dir=tmp_path / "c")
    assert _trajectory(a) == _trajectory(b)
    assert _trajectory(a)[1] != _trajectory(c)[1]


def test_evaluation_budget_counts_distinct_mappings(search_recipe, synth, tmp_path):
    result = search_mapping(search_recipe(max_evaluations=10, generations=20), search_dir=tmp_path / "s")
    assert result.summary["evaluations"]["distinct"] == 10 == len(synth.calls())


def test_cache_reused_when_resuming_a_longer_search(search_recipe, synth, tmp_path):
    out = tmp_path / "s"
    first = search_mapping(search_recipe(generations=2), search_dir=out)
    n = len(synth.calls())
    again = search_mapping(search_recipe(generations=2), search_dir=out, resume=True)
    assert len(synth.calls()) == n, "a finished search resumed evaluates nothing"
    assert _trajectory(again) == _trajectory(first)
    longer = search_mapping(search_recipe(generations=4), search_dir=out, resume=True)
    calls = synth.calls()
    assert len(calls) == len({tuple(c) for c in calls}) > n, "only new mappings are evaluated"
    fresh = search_mapping(search_recipe(generations=4), search_dir=tmp_path / "fresh")
    assert _trajectory(longer) == _trajectory(fresh)


def test_resume_after_interruption_matches_uninterrupted(search_recipe, synth, tmp_path, monkeypatch):
    reference = search_mapping(search_recipe(), search_dir=tmp_path / "ref")
    total = len(synth.calls())
    synth_calls = tmp_path / "calls.jsonl"
    synth_calls.unlink()
    monkeypatch.setenv("LMS_DIE_AFTER", "7")
    with pytest.raises(KeyboardInterrupt):
        search_mapping(search_recipe(), search_dir=tmp_path / "cut")
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert len(state["records"]) == 7 and not state["complete"]
    assert not (tmp_path / "cut" / "best_mapping.yaml").exists()
    with pytest.raises(BertpressError, match="has not finished"):
        read_best_mapping(tmp_path / "cut")
    monkeypatch.delenv("LMS_DIE_AFTER")
    resumed = search_mapping(search_recipe(), search_dir=tmp_path / "cut", resume=True)
    calls = synth.calls()
    assert len(calls) == total + 1  # the interrupted call itself never finished
    assert len({tuple(c) for c in calls}) == total, "nothing finished is evaluated again"
    assert _trajectory(resumed) == _trajectory(reference)
    assert resumed.summary["sessions"] == 2 and resumed.summary["evaluations"]["this_session"] == total - 7


def test_resume_refuses_changed_fitness_settings(search_recipe, synth, tmp_path):
    search_mapping(search_recipe(generations=0), search_dir=tmp_path / "s")
    changed = search_recipe(generations=0)
    changed["search"]["proxy"] = {"steps": 999}
    with pytest.raises(BertpressError, match=r"fitness settings changed \(proxy.steps: 150 -> 999\)"):
        search_mapping(changed, search_dir=tmp_path / "s", resume=True)


def test_failed_evaluation_excluded_and_not_retried_on_resume(search_recipe, synth, tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_FAULT", "error:4,5,6")  # the 'last' baseline fails once, then succeeds
    result = search_mapping(search_recipe(generations=1, retries=0), search_dir=tmp_path / "s")
    last = result.summary["baselines"]["last"]
    assert last["fitness"] is None and last["status"] == "failed"
    records = [json.loads(x) for x in (tmp_path / "s" / "evaluations.jsonl").read_text().splitlines()]
    failed = next(r for r in records if r["mapping"] == [4, 5, 6])
    assert "RuntimeError: transient failure" in failed["error"] and len(failed["attempts"]) == 1
    assert all(g["best_mapping"] != [4, 5, 6] for g in result.summary["generations"])
    n = len(synth.calls())
    search_mapping(search_recipe(generations=1, retries=0), search_dir=tmp_path / "s", resume=True)
    assert len(synth.calls()) == n


def test_error_is_retried_once(search_recipe, synth, tmp_path, monkeypatch):
    monkeypatch.setenv("LMS_FAULT", "error:4,5,6")
    result = search_mapping(search_recipe(generations=0), search_dir=tmp_path / "s")
    last = result.summary["baselines"]["last"]
    assert last["status"] == "ok" and last["fitness"] is not None
    record = json.loads((tmp_path / "s" / "state.json").read_text())["records"][1]
    assert [a["status"] for a in record["attempts"]] == ["error", "ok"]


def test_callable_fitness_inline(search_recipe, tmp_path):
    def fitness(task):
        return {"fitness": -abs(sum(task.mapping) - 9)}

    result = search_mapping(search_recipe(generations=2), search_dir=tmp_path / "s", fitness=fitness)
    assert sum(result.best_mapping) == 9


def test_search_reference_in_docs():
    from pathlib import Path

    from bertpress.search.spec import search_reference

    doc = (Path(__file__).parents[2] / "docs" / "search.md").read_text()
    assert search_reference() in doc, "docs/search.md: paste the output of search_reference() (spec.py)"


def test_search_on_tiny_models_finds_the_planted_mapping(search_recipe, synth, tmp_path):
    """Real distillations of a tiny teacher: the student starts as teacher layers 2, 3, 5, so mapping [2, 3, 5] has
    the lowest distillation loss (the runner-up's is 1.8x; 26 of the 56 mappings are evaluated); the search must find
    it."""
    recipe = search_recipe(fitness="synthetic:distilled", population=6, generations=4,
                           proxy={"steps": 1, "batch_size": 4, "max_blocks": 40, "eval_batches": 1})
    recipe["student"]["init_args"] = {"layers": [2, 3, 5]}
    result = search_mapping(recipe, search_dir=tmp_path / "s")
    s = result.summary
    assert result.best_mapping == [2, 3, 5], s["generations"]
    assert all(m > 0 for m in s["margin_over_baselines"].values())
    records = [json.loads(x) for x in (tmp_path / "s" / "evaluations.jsonl").read_text().splitlines()]
    losses = sorted(-r["fitness"] for r in records)
    assert losses[0] < 0.6 * losses[1], "the planted mapping is clearly best (the runner-up's loss is 1.8x)"
    assert len(synth.calls()) == s["evaluations"]["distinct"], "never evaluated twice"


def test_real_distillation_fitness_is_reproducible_with_dropout(search_recipe, synth, tmp_path):
    """Two searches whose fitness is a real (tiny) distillation, teacher and student with dropout 0.1, score every
    mapping bit for bit the same: an evaluation repeated after a crash gives the same value. (Same thread count:
    a worker process with another torch thread count sums in another order, ~1e-9 apart.)"""
    a = search_mapping(search_recipe(generations=0, fitness="synthetic:distilled", proxy={"steps": 20}), search_dir=tmp_path / "a")
    b = search_mapping(search_recipe(generations=0, fitness="synthetic:distilled", proxy={"steps": 20}), search_dir=tmp_path / "b")
    fa = {n: x["fitness"] for n, x in a.summary["baselines"].items()}
    assert fa == {n: x["fitness"] for n, x in b.summary["baselines"].items()}
    assert len(set(fa.values())) == 3, "the mappings are told apart"


def test_search_and_evaluation_share_the_proxy_tasks():
    from bertpress.evaluate.proxy import PROXY_TASKS
    from bertpress.search.spec import SearchSpec

    assert SearchSpec().proxy.tasks == list(PROXY_TASKS)


def test_exhaustive_scores_every_mapping_once_baselines_first(search_recipe, synth, tmp_path):
    result = search_mapping(search_recipe(method="exhaustive"), search_dir=tmp_path / "s")
    s = result.summary
    calls = synth.calls()
    assert calls[:3] == [[2, 4, 6], [4, 5, 6], [1, 3, 5]], "baselines first"
    assert sorted(map(tuple, calls)) == sorted(SearchSpace(3, 6).all()), "each of the 56 mappings exactly once"
    assert result.best_mapping == list(synth.target) and s["best"]["fitness"] == 1.0
    assert s["space"]["covered"] == 1.0 and s["method"] == "exhaustive" and len(s["generations"]) == 1
    assert "56 distinct mappings evaluated (0 failed; 100% of the space), every mapping" in (
        tmp_path / "s" / "search.md").read_text()
    ga = search_mapping(search_recipe(generations=1), search_dir=tmp_path / "g").summary
    assert ga["space"]["covered"] == pytest.approx(ga["evaluations"]["distinct"] / 56) and ga["space"]["covered"] < 1


def test_exhaustive_refuses_a_space_beyond_its_budget(search_recipe, synth, tmp_path):
    with pytest.raises(BertpressError, match=r"exhaustive would evaluate all 56 mappings, more than "
                                             r"search.max_evaluations 20: use method: ga"):
        search_mapping(search_recipe(method="exhaustive", max_evaluations=20), search_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_proxy_seeds_enter_the_fitness_key_only_when_changed(search_recipe):
    from bertpress.search.spec import SearchRecipe, fitness_settings

    def key(**proxy):
        recipe = SearchRecipe.model_validate(search_recipe(fitness="proxy", proxy=proxy))
        return fitness_settings(recipe.to_dict(), recipe.search)["proxy"]

    assert "seeds" not in key() and key() == key(seeds=[0])  # earlier searches keep their cache and resume
    assert key(seeds=[0, 1])["seeds"] == [0, 1]


def test_proxy_fitness_passes_seeds_and_keeps_the_noise(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import bertpress.evaluate.proxy as proxy
    import bertpress.train.run as run
    from bertpress.search.fitness import EvalTask, proxy_fitness

    seen = {}
    monkeypatch.setattr(run, "distill", lambda recipe, overwrite: SimpleNamespace(
        student_dir=tmp_path, summary={"final": {"loss": 1.5}, "tokens_seen": 10}))

    def scores(model_dir, data_dir, *, tasks, overrides, cache):
        seen["overrides"] = overrides
        return {"sst2": 80.0, "fitness": 80.0, "fitness_by_seed": [79.0, 81.0], "fitness_std": 1.41}

    monkeypatch.setattr(proxy, "proxy_scores", scores)
    task = EvalTask(key="k", mapping=(1, 2), recipe={"data": {}, "train": {}}, work_dir=str(tmp_path / "w"),
                    proxy={"steps": 2, "batch_size": 1, "eval_batches": 1, "tasks": ["sst2"], "seeds": [0, 1],
                           "finetune_overrides": ["epochs=1"]})
    result = proxy_fitness(task)
    assert seen["overrides"] == ["seeds=[0, 1]", "epochs=1"]
    assert result["scores"] == {"sst2": 80.0} and result["fitness_std"] == 1.41
    assert result["fitness_by_seed"] == [79.0, 81.0] and result["fitness"] == 80.0


def test_deeper_teacher_space_is_searched_not_enumerated(search_recipe, synth, tmp_path, tiny_corpus, monkeypatch):
    """A 12-layer teacher and a 4-layer student with no teacher weights (init random): 1,365 monotone mappings. With
    a clear optimum away from every heuristic, the genetic algorithm (seed 1; 4 of seeds 1-5 do) finds it evaluating
    under a tenth of them."""
    from tiny_models import save_tiny_teacher

    monkeypatch.setenv("LMS_TARGET", "1,4,10,11")
    teacher12 = save_tiny_teacher(tmp_path / "teacher12", mlm=True, num_hidden_layers=12)
    recipe = search_recipe(population=8, generations=20, max_evaluations=130, tournament_size=3, mutation_rate=0.5)
    recipe["teacher"]["name_or_path"] = str(teacher12)
    recipe["student"] = {"num_layers": 4, "init": "random"}
    result = search_mapping(recipe, search_dir=tmp_path / "s")
    s = result.summary
    assert s["space"]["size"] == 1365 and s["evaluations"]["distinct"] <= 130
    assert result.best_mapping == [1, 4, 10, 11], s["best"]
    assert s["space"]["covered"] < 0.1
