"""The teacher-cache benchmark's report on a fixture result: ratios to the live teacher and the break-even."""


def test_teacher_cache_report(tmp_path, benchmark_script):
    bench = benchmark_script("throughput", "teacher_cache")
    row = {"fp32, live teacher": 2000.0, "fp32, cached teacher": 2500.0, "default precision, live teacher": 3000.0,
           "default precision, cached teacher": 4500.0}
    report = {"command": "python benchmarks/throughput/teacher_cache.py", "blocks": 2048, "reps": 3, "warmup": 2,
              "steps": 6, "machine": {"cpu": "x", "cpu_count": 2}, "load": [1.0, 1.5],
              "cache": {"blocks": 1984, "bytes": 3.1e9, "build_seconds": 50.0, "shapes": {"hidden-0": [128, 384]}},
              "summary": {n: {"tokens_per_s": {"median": v, "min": v - 10, "max": v + 10}, "teacher_ms": 5.0,
                              "peak_rss_mb": 2000.0} for n, v in row.items()},
              "break_even_reads": 1.2}
    bench.write_report(report, tmp_path)
    md = (tmp_path / "teacher_cache.md").read_text()
    assert "| fp32, cached teacher | 2,500 (2,490-2,510) | 1.25x | 5 | 2,000 |" in md
    assert "| default precision, cached teacher | 4,500 (4,490-4,510) | 1.50x |" in md
    assert "1,984 training blocks, 3.10 GB in bf16 (1.56 MB per block" in md
    assert "after about 1.2 reads" in md
    assert (tmp_path / "teacher_cache.png").stat().st_size > 1000
