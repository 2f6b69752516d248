"""The NAS benchmark's settings: its targets are shapes of the shipped supernet space spanning > 3x in size, and the
separate route's recipes are the supernet recipe without the supernet (same objective, mapping and data)."""

from bertpress.train.build import arch_space, resolve_recipe


def test_targets_are_in_the_shipped_space_and_span_3x(tmp_path, benchmark_script):
    bench = benchmark_script("nas")
    supernet = resolve_recipe(bench._recipe(tmp_path, "supernet", 10, 16))
    assert set(bench.TARGETS) <= set(arch_space(supernet).archs())
    sizes = [bench._params(a) for a in bench.TARGETS]
    assert sizes[0] == 22_713_216  # the teacher's shape: all-MiniLM-L6-v2's 22.7M
    assert max(sizes) / min(sizes) > 3
    assert supernet.train.mixed_precision == "no" and supernet.supernet.sampling == "sandwich"


def test_separate_students_share_objective_mapping_and_data(tmp_path, benchmark_script):
    bench = benchmark_script("nas")
    supernet = resolve_recipe(bench._recipe(tmp_path, "supernet", 10, 16))
    arch = bench.TARGETS[2]
    alone = resolve_recipe(bench.separate_recipe(tmp_path, arch, 5, 16))
    assert alone.supernet is None and alone.student.init == "etd-impt"
    assert (alone.student.num_layers, alone.student.hidden_size, alone.student.num_heads,
            alone.student.intermediate_size) == (arch.layers, arch.hidden, arch.heads, arch.ffn)
    assert alone.objective == supernet.objective and alone.mapping == supernet.mapping
    assert alone.data == supernet.data and alone.train.max_steps == 5


def test_calibration_ignores_the_slow_first_steps(tmp_path, benchmark_script):
    import json

    bench = benchmark_script("nas")
    times = [0.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0]  # step 1 takes 9 s, then 1 s each
    lines = [json.dumps({"split": "train", "step": i + 1, "time": t, "loss": 1.0}) for i, t in enumerate(times)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert bench.steady_seconds_per_step(tmp_path / "metrics.jsonl") == 1.0
