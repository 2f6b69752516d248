"""Soak: a real-teacher distillation (dropout on) SIGKILLed at random points many times, resumed each time, ends
bit-identical to an uninterrupted run. Slow (minutes): ``pytest -m slow tests/reliability/test_soak.py``.

The kill points are random (seeded): 20 target steps spread over the run, each followed by a random delay, so
they land mid-step, mid-checkpoint, between steps and during validation alike. ``BERTPRESS_SOAK_KILLS`` / ``BERTPRESS_SOAK_STEPS`` change the size.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

KILLS = int(os.environ.get("BERTPRESS_SOAK_KILLS", "20"))
STEPS = int(os.environ.get("BERTPRESS_SOAK_STEPS", "200"))


def _last_step(out) -> int:
    """The last training step logged in metrics.jsonl (a resumed run drops the records it repeats)."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return -1
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()
             if line.strip().endswith("}") and '"train"' in line]
    return max(steps, default=-1)


def _start(recipe, out, env):
    args = [sys.executable, "-m", "bertpress", "distill", str(recipe)]
    if (out / "recipe.yaml").is_file():
        args.append("--resume")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(3600)
def test_random_kills_then_resume_end_bit_identical(data_dir, tmp_path):
    shard = data_dir / "corpus" / "enwiki-wikiextractor-2015" / "AA" / "wiki_00.gz"
    if not shard.is_file():
        pytest.skip(f"{shard} missing")
    recipe = {
        "seed": 5,
        "student": {"num_layers": 3, "init": "select"},  # the packaged teacher: dropout 0.1, as users run it
        "data": {"sources": [str(shard)], "block_size": 64, "cache_dir": str(tmp_path / "cache"),
                 "max_validation_blocks": 16},
        "objective": {"name": "minilm"},
        "train": {"max_steps": STEPS, "batch_size": 8, "lr": 1e-4, "save_every": 10, "keep_checkpoints": 2,
                  "eval_every": 50, "log_every": 5, "num_workers": 0},
    }
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    paths = {}
    for name in ("reference", "victim"):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**recipe, "output_dir": str(tmp_path / name)}))
    ref = subprocess.run([sys.executable, "-m", "bertpress", "distill", str(paths["reference"])],
                         capture_output=True, text=True, env=env, timeout=1800)
    assert ref.returncode == 0, ref.stderr[-3000:]

    out, rng = tmp_path / "victim", random.Random(2024)
    # kill targets spread over the run: each life trains past its target step, then dies 0-1.5 s later (mid-step,
    # mid-checkpoint, mid-validation, between steps: wherever that moment falls)
    targets = sorted(rng.sample(range(5, STEPS - 5, 5), KILLS)) if KILLS <= (STEPS - 10) // 5 else []
    assert len(targets) == KILLS, "too many kills for the run length: raise BERTPRESS_SOAK_STEPS"
    kills, resumed_from = 0, []
    for target in targets:
        proc = _start(paths["victim"], out, env)
        while proc.poll() is None and _last_step(out) < target:
            time.sleep(0.05)
        if proc.poll() is not None:  # it finished before we could kill it
            break
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        state = sorted((out / "checkpoints").glob("step-*/trainer_state.json"))
        resumed_from.append(json.loads(state[-1].read_text())["step"] if state else 0)
    final = _start(paths["victim"], out, env)
    _, err = final.communicate(timeout=1800)
    assert final.returncode == 0, err[-3000:]

    a = load_file(str(tmp_path / "reference" / "student" / "model.safetensors"))
    b = load_file(str(out / "student" / "model.safetensors"))
    max_diff = max((a[k] - b[k]).abs().max().item() for k in a)
    report = {"kills": kills, "steps": STEPS, "resumed_from_steps": resumed_from, "max_abs_weight_diff": max_diff}
    print(json.dumps(report))
    (tmp_path / "soak.json").write_text(json.dumps(report))
    assert kills == KILLS, f"only {kills} kills landed before the run finished: lengthen the run"
    assert len(set(resumed_from)) > KILLS // 4, f"kills clustered at a few steps: {resumed_from}"
    for k in a:
        assert torch.equal(a[k], b[k]), k
