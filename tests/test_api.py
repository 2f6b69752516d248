"""The top-level Python API: the same functions the CLI runs, imported on first use."""

import subprocess
import sys

import bertpress


def test_api_names_are_the_library_functions():
    from bertpress.evaluate.compare import evaluate_models
    from bertpress.export import export_model
    from bertpress.pipeline import distill
    from bertpress.search.search import search_mapping
    from bertpress.train.build import build_run, resolve_recipe

    assert bertpress.distill is distill and bertpress.build_run is build_run
    assert bertpress.resolve_recipe is resolve_recipe and bertpress.evaluate_models is evaluate_models
    assert bertpress.search_mapping is search_mapping and bertpress.export_model is export_model
    from bertpress.train.cohort import distill_cohort

    assert bertpress.distill_cohort is distill_cohort
    assert set(bertpress.__all__) >= {"distill", "distill_cohort", "evaluate_models", "search_mapping", "export_model"}


def test_import_stays_light():
    code = "import sys, bertpress; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["False", "False"]


def test_api_distill_takes_a_recipe_dict(tmp_path, tiny_teacher_bare, tiny_corpus):
    run = bertpress.distill({
        "output_dir": str(tmp_path / "out"), "teacher": {"name_or_path": str(tiny_teacher_bare)},
        "student": {"num_layers": 1},
        "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
        "train": {"max_steps": 2, "batch_size": 4, "num_workers": 0, "eval_every": 0, "save_every": 0}})
    assert run.summary["steps"] == 2 and (run.student_dir / "model.safetensors").is_file()
