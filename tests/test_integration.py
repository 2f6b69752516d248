"""The packaged teacher distilled on the real Wikipedia shards for a few steps (skips without ../shared/data)."""

import os

import pytest
import torch
from transformers import AutoModel

from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill


@pytest.fixture
def all_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.mark.integration
def test_packaged_teacher_on_wikipedia_shard(data_dir, tmp_path, all_threads):
    shard = data_dir / "corpus" / "enwiki-wikiextractor-2015" / "AA" / "wiki_00.gz"
    if not shard.is_file():
        pytest.skip(f"{shard} missing")
    result = distill({
        "output_dir": str(tmp_path / "run"),
        "student": {"num_layers": 3, "init": "select"},
        "data": {"sources": [str(shard)], "block_size": 128, "cache_dir": str(tmp_path / "cache"),
                 "max_validation_blocks": 8},
        "objective": {"name": "tinybert"},
        "train": {"max_steps": 6, "batch_size": 8, "lr": 5e-4, "warmup_ratio": 0.0, "eval_every": 0,
                  "save_every": 0, "num_workers": 0, "log_every": 2},
    })
    s = result.summary
    assert s["teacher"]["parameters"] == 22_713_216 and not s["teacher"]["mlm_head"]
    assert s["init"]["layers"] == [1, 3, 5] and s["mapping"] == [2, 4, 6]
    assert s["corpus"]["blocks"] > 1000
    valid = read_metrics(result.output_dir / "metrics.jsonl", "valid")
    assert valid[-1]["loss"] < valid[0]["loss"]
    assert AutoModel.from_pretrained(result.student_dir).config.num_hidden_layers == 3
