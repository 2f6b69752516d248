"""SIGKILL at several points, including mid-checkpoint: ``--resume`` ends with the uninterrupted run's weights."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from bertpress.train.checkpoint import checkpoints
from bertpress.train.run import distill

KILLER = Path(__file__).with_name("killer.py")
STEPS, SAVE_EVERY = 12, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_teacher_mlm, tiny_corpus):
    root = tmp_path_factory.mktemp("kill")
    recipe = {
        "seed": 11,
        "output_dir": str(root / "reference"),
        "teacher": {"name_or_path": str(tiny_teacher_mlm)},
        "student": {"num_layers": 2, "init": "random"},
        "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(root / "cache")},
        "objective": {"name": "distilbert"},  # MLM masking + soft targets: every random state matters
        "train": {"max_steps": STEPS, "batch_size": 4, "lr": 1e-3, "save_every": SAVE_EVERY,
                  "keep_checkpoints": 2, "eval_every": 0, "num_workers": 0, "log_every": 1},
    }
    reference = load_file(str(distill(recipe).student_dir / "model.safetensors"))
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump({**recipe, "output_dir": str(root / "victim")}))
    return root, path, reference


def _run(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # Ctrl-C as in a terminal: a shell's background job (``pytest ... &``) passes SIGINT ignored to its children,
    # and Python then installs no KeyboardInterrupt handler
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=300,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize(("point", "step", "complete_before"), [
    ("mid-checkpoint", 8, [4]),         # step-8 is half-written: resume from step 4
    ("after-checkpoint", 8, [4, 8]),
    ("mid-step", 6, [4]),               # between backward and optimizer update of step 7
    ("publish", 0, [4, 8]),             # training done, final student being written
    ("ctrl-c", 4, [4]),                 # Ctrl-C after the step-4 checkpoint: exit 130, then --resume
])
def test_sigkill_then_resume_matches_uninterrupted(setup, point, step, complete_before):
    root, recipe, reference = setup
    out = root / "victim"
    killed = _run(KILLER, point, step, recipe, "--overwrite")
    expected = 130 if point == "ctrl-c" else -signal.SIGKILL
    assert killed.returncode == expected, killed.stderr[-3000:]
    if point == "ctrl-c":
        assert killed.stderr.strip().splitlines()[-1] == "bertpress: interrupted"
    assert [int(p.name[5:]) for p in checkpoints(out / "checkpoints")] == complete_before
    assert not (out / "bertpress.json").exists(), "a killed run never looks finished"
    resumed = _run("-m", "bertpress", "distill", recipe, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = load_file(str(out / "student" / "model.safetensors"))
    for k in reference:
        assert torch.equal(got[k], reference[k]), k  # bit for bit
    assert not list((out / "checkpoints").glob("*.tmp")), "leftover temporary checkpoints are cleaned up"
    assert len(checkpoints(out / "checkpoints")) <= 2, "only keep_checkpoints are kept"
