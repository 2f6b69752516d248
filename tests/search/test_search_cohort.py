"""search.backend cohort: proxy distillations of a flush share one teacher forward per batch and give the same
fitness as solo evaluations; failed members are retried on their own; the setting is validated."""

import json

import pytest
from lms_helpers import GLUE_TASKS, write_glue

import bertpress.search.fitness as fitness_mod
from bertpress.errors import BertpressError
from bertpress.search.search import search_mapping


@pytest.fixture
def proxy_recipe(search_recipe, tmp_path):
    data = write_glue(tmp_path / "data")

    def make(**search):
        return search_recipe(fitness="proxy", population=4, generations=0, baselines=["uniform", "last"],
                             threads=1, proxy={"steps": 3, "batch_size": 4, "max_blocks": 40, "eval_batches": 1,
                                               "data_dir": str(data), "tasks": GLUE_TASKS,
                                               "finetune_overrides": ["epochs=1", "max_length=32", "batch_size=8"]},
                             **search)
    return make


def _records(out):
    return {tuple(r["mapping"]): r for r in map(json.loads, (out / "evaluations.jsonl").read_text().splitlines())}


def test_cohort_fitness_equals_solo_and_shares_the_teacher(proxy_recipe, tmp_path):
    solo = _records(search_mapping(proxy_recipe(workers=0), search_dir=tmp_path / "solo").search_dir)
    result = search_mapping(proxy_recipe(backend="cohort", cohort_size=3), search_dir=tmp_path / "cohort")
    cohort = _records(result.search_dir)
    assert cohort.keys() == solo.keys() and len(cohort) == 4
    for m, r in cohort.items():
        assert r["status"] == "ok" and len(r["attempts"]) == 1
        assert r["fitness"] == solo[m]["fitness"] and r["scores"] == solo[m]["scores"], m
        assert r["distill_loss"] == solo[m]["distill_loss"], m
    sizes = sorted(r["details"].get("cohort", {}).get("members", 1) for r in cohort.values())
    assert sizes == [1, 3, 3, 3], "a flush of 4 runs as a cohort of 3, then the last one alone"
    shared = next(r["details"]["cohort"] for r in cohort.values() if "cohort" in r["details"])
    assert shared["teacher_forwards"] == 3 and shared["member_batches"] == 9, "one teacher forward per step"
    s = result.summary
    assert s["backend"] == "cohort" and s["evaluations"]["mean_seconds"] > 0
    assert "cohorts of up to 3" in (result.search_dir / "search.md").read_text()


def test_failed_members_are_retried_alone(proxy_recipe, tmp_path, monkeypatch):
    real = fitness_mod.score_proxy_student
    failed = []

    def flaky(task, result, distill_s, **details):
        if "cohort" in details and not failed:
            failed.append(task.mapping)
            raise RuntimeError("scoring broke")
        return real(task, result, distill_s, **details)

    monkeypatch.setattr(fitness_mod, "score_proxy_student", flaky)
    out = search_mapping(proxy_recipe(backend="cohort", cohort_size=4), search_dir=tmp_path / "s").search_dir
    records = _records(out)
    assert all(r["status"] == "ok" for r in records.values())
    retried = records[failed[0]]
    assert [a["status"] for a in retried["attempts"]] == ["error", "ok"]
    assert "scoring broke" in retried["attempts"][0]["error"] and "cohort" not in retried["details"]
    assert sum(len(r["attempts"]) for r in records.values()) == 5, "only the failed member ran again"


def test_a_failed_cohort_distillation_fails_every_member_then_each_retries(proxy_recipe, tmp_path, monkeypatch):
    def broken(tasks):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(fitness_mod, "_distill_cohort", broken)
    out = search_mapping(proxy_recipe(backend="cohort", retries=1), search_dir=tmp_path / "s").search_dir
    for r in _records(out).values():
        assert [a["status"] for a in r["attempts"]] == ["error", "ok"] and "out of memory" in r["attempts"][0]["error"]


@pytest.mark.parametrize(("search", "message"), [
    ({"backend": "cohort", "fitness": "synthetic:peak"}, "fitness 'proxy' only"),
    ({"backend": "cohort", "cohort_size": 1}, "cohort_size"),
])
def test_bad_cohort_settings_are_refused(search_recipe, tmp_path, search, message):
    with pytest.raises(BertpressError, match=message):
        search_mapping(search_recipe(**search), search_dir=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_cohort_refuses_an_in_process_fitness_function(search_recipe, tmp_path):
    with pytest.raises(BertpressError, match="backend 'cohort' runs the proxy fitness"):
        search_mapping(search_recipe(backend="cohort", fitness="proxy"), search_dir=tmp_path / "s",
                       fitness=lambda task: {"fitness": 1.0})


def test_zero_shot_only_proxy(proxy_recipe, tmp_path):
    """proxy.tasks [stsb-zeroshot]: no fine-tuning, the proxy's training settings do not apply (and do not fail)."""
    recipe = proxy_recipe(backend="cohort")
    recipe["search"]["proxy"] = {**recipe["search"]["proxy"], "tasks": ["stsb-zeroshot"], "finetune_overrides": []}
    records = _records(search_mapping(recipe, search_dir=tmp_path / "s").search_dir)
    assert len(records) == 4
    for r in records.values():
        assert set(r["scores"]) == {"stsb-zeroshot"} and r["fitness"] == r["scores"]["stsb-zeroshot"]
        assert -100 <= r["fitness"] <= 100 and r["details"]["proxy_s"] < r["details"]["distill_s"] + 30
