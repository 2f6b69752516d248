"""The GPU throughput benchmark's FLOP count and report on a fixture result."""

from pathlib import Path
from types import SimpleNamespace

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


def _gpu(benchmark_script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS / "throughput"))  # the script imports its siblings
    return benchmark_script("throughput", "gpu")


def test_flops_by_hand(benchmark_script, monkeypatch):
    gpu = _gpu(benchmark_script, monkeypatch)
    # 3 tokens, hidden 2, FFN 4: projections 2*3*(4*2*2 + 2*2*4) = 192; QK^T and PV 2*2*1*3*3*2 = 72
    assert gpu.layer_flops(2, 4, 1, 3) == 264
    config = SimpleNamespace(hidden_size=2, intermediate_size=4, num_hidden_layers=6)
    assert gpu.step_flops(config, 1) == gpu.layer_flops(2, 4, 1, 128) * (6 + 3 * 3)  # teacher + 3 x student


def test_report(benchmark_script, monkeypatch, tmp_path):
    gpu = _gpu(benchmark_script, monkeypatch)

    def row(rate, mfu):
        return {"tokens_per_s": {"median": rate, "min": rate - 100, "max": rate + 100}, "tflops": 123.4, "mfu": mfu,
                "peak_device_mb": {"median": 2048.0}}

    result = {"command": "python benchmarks/throughput/gpu.py", "batch_size": 256, "reps": 2, "warmup": 10,
              "steps": 30, "total_wall_s": 300.0,
              "machine": {"device_name": "NVIDIA H200", "peak_tflops": 989.4, "torch": "2.x", "transformers": "5.x"},
              "equivalence": {"max_relative_difference_to_plain": {"plain": 0.0, "bertpress": 2e-6}, "tolerance": 1e-3,
                              "passed": True},
              "teachers": [{"teacher": "packaged:all-MiniLM-L6-v2", "step_flops": 1.83e12,
                            "rows": {"bertpress": row(400_000, 0.25), "plain_bf16": row(200_000, 0.125),
                                     "plain": row(100_000, None), "textbrewer": row(80_000, 0.05)},
                            "ratios": {"plain_bf16": 2.0, "plain": 4.0, "textbrewer": 5.0}}]}
    gpu.write_markdown(result, tmp_path / "r.md")
    md = (tmp_path / "r.md").read_text()
    assert "| bertpress | bf16 autocast | 400,000 (399,900-400,100) | 123.4 | 25.0% | 2,048 |  |" in md
    assert "| textbrewer | fp32 | 80,000 (79,900-80,100) | 123.4 | 5.0% | 2,048 | 5.00x |" in md
    assert "| plain | fp32 | 100,000 (99,900-100,100) | 123.4 | n/a | 2,048 | 4.00x |" in md
    assert "2.0e-06 (tolerance 0.001): **passed**" in md
    assert "## Teacher packaged:all-MiniLM-L6-v2 (1.83 TFLOP per step)" in md
