"""The quality benchmark's report code on a fixture results file: table rows, the margin over the best baseline."""


def test_screen_report(tmp_path, benchmark_script):
    report = {
        "command": "python benchmarks/quality/run.py --steps 10", "machine": {"cpu": "x", "cpu_count": 2,
                                                                           "load_average": [0.1]},
        "budget": {"steps": 10, "batch_size": 4, "seed": 1, "tokens": 5120},
        "rows": [
            {"name": "teacher", "kind": "teacher", "layers": "1-6", "zeroshot": 86.7, "proxy_stsb": 82.3},
            {"name": "copy-a", "kind": "baseline", "layers": [1, 3, 5], "zeroshot": 70.0, "proxy_stsb": 30.0},
            {"name": "copy-b", "kind": "baseline", "layers": [1, 3, 6], "zeroshot": 80.0, "proxy_stsb": 40.0},
            {"name": "cand", "kind": "distilled", "layers": [1, 3, 6], "mapping": [1, 3, 6], "loss_start": 2.0,
             "loss_end": 1.25, "train_time_s": 12.5, "zeroshot": 81.0, "proxy_stsb": 37.5},
        ]}
    benchmark_script("quality").write_report(report, tmp_path)
    md = (tmp_path / "screen.md").read_text()
    assert "| cand | distilled | [1, 3, 6] | [1, 3, 6] | 2.000 -> 1.250 | 81.0 | 37.5 | -2.5 | 12.5 |" in md
    assert "| copy-a | baseline | [1, 3, 5] | - | - | 70.0 | 30.0 | -10.0 | - |" in md
    assert "4 blocks x 128 tokens = 5,120 tokens" in md
    assert (tmp_path / "screen.png").stat().st_size > 1000
    assert (tmp_path / "screen.json").is_file()
