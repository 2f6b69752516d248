"""The bf16 check's summary and report on fixture results (the check itself distils for tens of minutes)."""


def _run(loss: float, tokens_per_s: float, zeroshot: float) -> dict:
    return {"final_heldout": {"loss": loss}, "tokens_per_s": tokens_per_s, "train_time_s": 100.0,
            "zeroshot_stsb": zeroshot}


def test_bf16_summary_and_report(tmp_path, benchmark_script):
    check = benchmark_script("throughput", "bf16_check")
    runs = {1: {"no": _run(0.080, 2000, 83.0), "bf16": _run(0.0808, 3000, 83.5)},
            2: {"no": _run(0.100, 2000, 82.0), "bf16": _run(0.0980, 3200, 81.5)}}
    s = check.summarise(runs, tolerance=0.015)
    # relative differences +1% and -2%: the second seed is outside 1.5%
    assert abs(s["per_seed"][1]["relative_heldout_difference"] - 0.01) < 1e-12
    assert abs(s["per_seed"][2]["relative_heldout_difference"] + 0.02) < 1e-12
    assert not s["within_tolerance"] and abs(s["max_abs_relative_heldout_difference"] - 0.02) < 1e-12
    assert s["median_speedup"] == 1.55 and s["mean_zeroshot_difference"] == 0.0
    assert check.summarise(runs, tolerance=0.025)["within_tolerance"]
    report = {"command": "python benchmarks/throughput/bf16_check.py", "steps": 300, "batch_size": 16,
              "tolerance": 0.015, "runs": runs, "summary": s,
              "machine": {"cpu": "x", "cpu_count": 2, "native_bf16_flags": ["avx512_bf16"], "load_average": [0.1]}}
    md = check.write(report, tmp_path)
    assert "| 2 | bf16 | 0.09800 | 81.50 | 3,200 | 100 |" in md
    assert "| 1 | +1.00% | +0.50 | 1.50x |" in md
    assert "at most 2.00% apart (tolerance ±1.5% per seed: OUTSIDE)" in md
    assert (tmp_path / "bf16_check.json").is_file()
