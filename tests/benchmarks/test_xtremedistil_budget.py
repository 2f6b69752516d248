"""The XtremeDistil benchmark's student: a valid recipe whose stages never see more tokens than the baseline's."""

import pytest

from bertpress.train.build import resolve_recipe


def test_stages_are_sized_to_the_baseline_budget(benchmark_script):
    bench = benchmark_script("xtremedistil")
    steps = bench.sized_schedule(mean_transfer=30.0, mean_labelled=12.0, batch_size=32, num_layers=3)
    # 50% of 307,200 tokens at 32 x 30 per step; 40% over 5 logit stages; 10% over 5 labelled stages at 32 x 12
    assert steps == {"representation_steps": 160, "logit_steps": 25, "labelled_steps": 16}
    worst = 32 * (30.0 * (steps["representation_steps"] + 5 * steps["logit_steps"]) + 12.0 * 5 * steps["labelled_steps"])
    assert worst <= bench.BUDGET_TOKENS == 150 * 16 * 128
    assert worst == pytest.approx(bench.BUDGET_TOKENS, rel=0.02)


def test_benchmark_recipe_is_the_shipped_one_with_its_budget(tmp_path, benchmark_script):
    bench = benchmark_script("xtremedistil")
    recipe = bench.base_recipe(tmp_path, batch_size=32)
    recipe["schedule"] |= bench.sized_schedule(30.0, 12.0, 32, recipe["student"]["num_layers"])
    r = resolve_recipe(recipe)
    assert r.teacher.source_task.task == "sst2" and r.teacher.source_task.settings == {"max_train_examples": 20_000}
    assert r.schedule.name == "xtremedistil" and r.schedule.representation_steps == 160
    assert r.student.init_args == {"layers": [1, 3, 6]} and r.data.unit == "sentences"
    assert r.data.cache_dir == str(tmp_path / "cache") and r.train.batch_size == 32


def test_a_pair_source_task_reads_sentence_pairs(tmp_path, benchmark_script):
    bench = benchmark_script("xtremedistil")
    recipe = bench.base_recipe(tmp_path, batch_size=16, source="mrpc")
    recipe["schedule"] |= bench.sized_schedule(40.0, 50.0, 16, 3)
    r = resolve_recipe(recipe)
    assert r.teacher.source_task.task == "mrpc" and r.data.unit == "pairs"
    assert r.data.sources[1].task == "mrpc" and r.output_dir == str(tmp_path / "xtremedistil-mrpc")
