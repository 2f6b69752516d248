"""The quickstart pipeline end to end on the packaged teacher (a couple of steps), offline."""

import json

import pytest
from transformers import AutoModel

from bertpress.cli import main
from bertpress.data.tasks.files import default_data_dir


@pytest.mark.integration
def test_quickstart_tiny_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BERTPRESS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "qs"
    assert main(["quickstart", "--steps", "2", "--batch-size", "2", "--sts-pairs", "40", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ("parameters", "size on disk", "CPU latency", "held-out distillation loss", "agreement"):
        assert row in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher"]["parameters"] == 22_713_216
    assert summary["student"]["parameters"] < summary["teacher"]["parameters"]
    assert summary["steps"] == 2 and summary["speedup"] > 0
    assert 0 < summary["agreement_before"]["token_cosine"] <= 1
    assert (out / "corpus" / "stdlib-docstrings.txt").stat().st_size > 500_000
    assert AutoModel.from_pretrained(summary["student_dir"]).config.num_hidden_layers == 3
    assert (out / "summary.md").read_text().startswith("| | teacher | student | |")
    if (default_data_dir() / "glue" / "STS-B" / "dev.tsv").is_file():  # CI has ../shared/data
        zs = summary["sts_zeroshot"]
        assert zs["pairs"] == 40 and zs["pooling"] == "mean" and "STS-B zero-shot" in printed
        assert zs["teacher"] > 50, "all-MiniLM-L6-v2 is a strong zero-shot sentence encoder"
        assert -100 <= zs["before"] <= 100 and -100 <= zs["after"] <= 100
