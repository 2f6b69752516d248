"""A real search end to end on tiny models: tiny distillations, the real proxy on tiny GLUE-format files, the
CLI verbs ``search-mapping`` and ``distill --mapping-from``."""

import json

import pytest
from lms_helpers import GLUE_TASKS, write_glue, write_recipe

from bertpress.cli import main


def test_real_search_then_distill_with_found_mapping(search_recipe, tmp_path, capsys):
    data = write_glue(tmp_path / "data")
    recipe = search_recipe(
        fitness="proxy", population=4, generations=1, baselines=["uniform", "last"], threads=1,
        proxy={"steps": 3, "batch_size": 4, "max_blocks": 40, "eval_batches": 1, "data_dir": str(data),
               "tasks": GLUE_TASKS,
               "finetune_overrides": ["epochs=1", "max_length=32", "batch_size=8"]})
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    out = tmp_path / "search"
    assert main(["search-mapping", str(path), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "monotone search space" in printed and "uniform [2, 4, 6]" in printed and "--mapping-from" in printed
    summary = json.loads((out / "search.json").read_text())
    records = [json.loads(x) for x in (out / "evaluations.jsonl").read_text().splitlines()]
    assert len(records) == summary["evaluations"]["distinct"] == 7  # 2 baselines, 2 random, 3 children
    for r in records:
        assert r["status"] == "ok" and set(r["scores"]) == {"sst2", "mrpc", "stsb"}
        assert abs(r["fitness"] - sum(r["scores"].values()) / 3) < 1e-9
        assert r["distill_loss"] > 0 and r["details"]["distill_s"] > 0 and r["details"]["proxy_s"] > 0
    assert not (out / "work").exists(), "proxy students are deleted unless keep_students"
    assert summary["best"]["fitness"] == max(r["fitness"] for r in records)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    best = [e.value for e in EventAccumulator(str(out / "tensorboard")).Reload().Scalars("search/best_fitness")]
    assert len(best) == 7 and best == sorted(best) and best[-1] == pytest.approx(summary["best"]["fitness"])

    distilled = tmp_path / "student"
    assert main(["distill", str(path), "--mapping-from", str(out), "--output-dir", str(distilled)]) == 0
    assert json.loads((distilled / "bertpress.json").read_text())["mapping"] == summary["best"]["mapping"]
