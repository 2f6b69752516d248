"""The shrinkage diagnostic (issue 12): last-layer statistics against a hand computation on a tiny model, padding
excluded, and the report on fixture rows."""

import pytest
import torch
from transformers import AutoModel, AutoTokenizer


def test_last_layer_stats_by_hand(benchmark_script, tiny_teacher_bare):
    bench = benchmark_script("quality", "shrinkage")
    texts = ["the cat sat on the mat .", "a dog ran ."]
    got = bench.last_layer_stats(tiny_teacher_bare, texts)
    tok, model = AutoTokenizer.from_pretrained(tiny_teacher_bare), AutoModel.from_pretrained(tiny_teacher_bare).eval()
    rows = []
    with torch.no_grad():
        for t in texts:  # one at a time: no padding at all
            rows.append(model(**tok(t, return_tensors="pt")).last_hidden_state[0])
    tokens = torch.cat(rows)
    assert got["token_norm"] == pytest.approx(tokens.norm(dim=-1).mean().item(), rel=1e-4)
    assert got["token_std"] == pytest.approx(tokens.std(0).mean().item(), rel=1e-4)
    assert got["cls_std"] == pytest.approx(torch.stack([r[0] for r in rows]).std(0).mean().item(), rel=1e-4)


def test_report_on_fixture_rows(benchmark_script, tmp_path):
    bench = benchmark_script("quality", "shrinkage")
    rows = [{"label": "teacher", "blocks": None, "token_norm": 8.0, "token_std": 0.4, "cls_std": 0.2, "cola": (29.4, 2.9)},
            {"label": "long", "blocks": 64000, "token_norm": 6.0, "token_std": 0.3, "cls_std": 0.1, "cola": None}]
    r = {"command": "python benchmarks/quality/shrinkage.py", "machine": {"cpu": "x"}, "sentences": 2, "rows": rows}
    md = bench.markdown(r)
    assert "| teacher | - | 8.000 (100%) | 0.400 (100%) | 0.200 (100%) | 29.4 ± 2.9 |" in md
    assert "| long | 64,000 | 6.000 (75%) | 0.300 (75%) | 0.100 (50%) | - |" in md
    bench.plot(r, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
