"""Two CPU processes (gloo, launched with torchrun) match one process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from bertpress.train.run import distill

from tiny_models import save_tiny_teacher


@pytest.mark.parametrize("staged", [False, True], ids=["one-stage", "two-stages"])
def test_two_processes_match_one(tmp_path, tiny_corpus, staged):
    """With stages, DDP must reduce the gradients of parameters that start training only in stage 2."""
    # dropout off on purpose: two processes draw their dropout masks from their own RNG streams, so only without
    # dropout can two processes equal one (with dropout each is exact against its own resume, test_kill_resume)
    teacher = save_tiny_teacher(tmp_path / "teacher", mlm=False, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)
    recipe = {
        "teacher": {"name_or_path": str(teacher)},
        "student": {"num_layers": 2, "init": "random"},
        "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
        "objective": {"name": "tinybert"},
        "train": {"max_steps": 6, "batch_size": 4, "num_workers": 0, "eval_every": 3, "save_every": 3,
                  "log_every": 1, "mixed_precision": "no"},  # fp32 in the subprocess too: the in-process reference is fp32 (conftest)
    }
    if staged:
        recipe["stages"] = [{"steps": 3, "trainable": ["layer 2"]}, {"steps": 3}]
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump({**recipe, "output_dir": str(tmp_path / "ddp")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(29517 + staged), "-m", "bertpress", "distill", str(path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "bertpress.json").read_text())
    assert ddp["processes"] == 2 and ddp["tokens_seen"] == 6 * 8 * 32

    single = distill({**recipe, "output_dir": str(tmp_path / "single"),
                      "train": {**recipe["train"], "batch_size": 8}})
    a, b = load_file(str(tmp_path / "ddp" / "student" / "model.safetensors")), load_file(str(single.student_dir / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)

    def losses(d):
        return [json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()
                if '"train"' in line]

    assert losses(tmp_path / "ddp") == pytest.approx(losses(single.output_dir), rel=1e-5)
