"""Training stages and the callback seam: what a stage trains, where it starts, and exact resume across a boundary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from bertpress.errors import BertpressError
from bertpress.train.callbacks import Callback
from bertpress.train.checkpoint import checkpoints
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill

KILLER = Path(__file__).parents[1] / "reliability" / "killer.py"
BOUNDARY, TOTAL = 5, 12


def staged(tmp_path: Path, teacher: Path, corpus: Path, name: str = "staged", **train) -> dict:
    """Stage 1: only student layer 1 learns (tinybert, lr 2e-3); stage 2: everything (distilbert: MLM masking and
    soft targets, so masking and the dropout RNG must continue exactly across the boundary)."""
    return {
        "seed": 5, "output_dir": str(tmp_path / name), "teacher": {"name_or_path": str(teacher)},
        "student": {"num_layers": 2, "init": "select"},
        "data": {"sources": [str(corpus)], "block_size": 32, "validation_fraction": 0.1,
                 "cache_dir": str(tmp_path / "cache")},
        "stages": [{"name": "layer-1", "steps": BOUNDARY, "trainable": ["layer 1"], "lr": 2e-3},
                   {"name": "all", "steps": TOTAL - BOUNDARY, "objective": {"name": "distilbert"}}],
        "train": {"batch_size": 4, "lr": 1e-3, "eval_every": 0, "save_every": 4, "log_every": 1, "num_workers": 0,
                  "mixed_precision": "no", **train},  # fp32 in the subprocess too: the in-process reference is fp32 (conftest)
    }


class Recorder(Callback):
    """Keeps every event and a copy of the student's weights at each stage start."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.weights: dict[str, dict[str, torch.Tensor]] = {}

    def on_stage_start(self, distiller, stage) -> None:
        self.events.append(("stage", stage.name, distiller.state.step))
        self.weights[stage.name] = {k: v.clone() for k, v in distiller.student().state_dict().items()}

    def on_step_end(self, distiller, step, terms) -> None:
        self.events.append(("step", step, sorted(terms) if terms else None))

    def on_evaluate(self, distiller, step, metrics) -> None:
        self.events.append(("evaluate", step, sorted(metrics)))

    def on_save(self, distiller, step, path) -> None:
        self.events.append(("save", step, Path(path).name))


def test_stage_one_trains_only_layer_one_then_stage_two_trains_all(tmp_path, tiny_teacher_mlm, tiny_corpus):
    rec = Recorder()
    result = distill(staged(tmp_path, tiny_teacher_mlm, tiny_corpus), callbacks=[rec])
    assert [e for e in rec.events if e[0] == "stage"] == [("stage", "layer-1", 0), ("stage", "all", BOUNDARY)]
    start, boundary = rec.weights["layer-1"], rec.weights["all"]
    changed = {k for k in start if not torch.equal(start[k], boundary[k])}
    assert changed and all(k.startswith("bert.encoder.layer.0.") for k in changed), sorted(changed)
    layer_one = {k for k in start if k.startswith("bert.encoder.layer.0.") and "LayerNorm" not in k}
    assert layer_one <= changed  # every weight matrix of layer 1 moved
    final = load_file(str(result.student_dir / "model.safetensors"))
    assert not torch.equal(final["bert.encoder.layer.1.attention.self.query.weight"],
                           boundary["bert.encoder.layer.1.attention.self.query.weight"])
    assert not torch.equal(final["bert.embeddings.word_embeddings.weight"],
                           boundary["bert.embeddings.word_embeddings.weight"])
    summary = json.loads((result.output_dir / "bertpress.json").read_text())
    one, two = summary["stages"]
    assert (one["name"], one["start"], one["steps"], one["lr"], one["trainable"]) == ("layer-1", 0, 5, 2e-3,
                                                                                   ["layer 1"])
    assert (two["start"], two["objective"]["weights"].keys() >= {"ce", "mlm", "cos"}) == (BOUNDARY, True)
    assert one["trained_tensors"] == len(layer_one) + sum("LayerNorm" in k for k in start
                                                          if k.startswith("bert.encoder.layer.0."))
    # each stage runs its own warm-up and decay, at its own peak
    lrs = {r["step"]: r["lr"] for r in read_metrics(result.output_dir / "metrics.jsonl", "train")}
    assert max(lrs[s] for s in range(1, BOUNDARY + 1)) == pytest.approx(2e-3)
    assert max(lrs[s] for s in range(BOUNDARY + 1, TOTAL + 1)) == pytest.approx(1e-3)
    stages_logged = read_metrics(result.output_dir / "metrics.jsonl", "stage")
    assert [(r["step"], r["name"]) for r in stages_logged] == [(0, "layer-1"), (BOUNDARY, "all")]


def test_callbacks_fire_in_order(tmp_path, tiny_teacher_mlm, tiny_corpus):
    rec = Recorder()
    distill(staged(tmp_path, tiny_teacher_mlm, tiny_corpus, log_every=3, eval_every=6), callbacks=[rec])
    kinds = [e[0] for e in rec.events]
    assert kinds[:2] == ["stage", "evaluate"] and kinds[-1] == "evaluate"  # initial and final evaluation
    steps = [e[1] for e in rec.events if e[0] == "step"]
    assert steps == list(range(1, TOTAL + 1))
    logged = [e[1] for e in rec.events if e[0] == "step" and e[2]]
    assert logged == [3, 6, 9, 12]
    assert [e[1:] for e in rec.events if e[0] == "save"] == [(4, "step-00000004"), (5, "step-00000005"),
                                                             (8, "step-00000008")]  # and at the boundary
    assert [e[1] for e in rec.events if e[0] == "evaluate"] == [0, 6, TOTAL]


def test_resume_inside_the_second_stage_is_exact(tmp_path, tiny_teacher_mlm, tiny_corpus):
    full = load_file(str(distill(staged(tmp_path, tiny_teacher_mlm, tiny_corpus, name="full")).student_dir
                         / "model.safetensors"))
    recipe = staged(tmp_path, tiny_teacher_mlm, tiny_corpus, name="cut")
    distill(recipe, stop_after=10)  # last checkpoint at step 8, inside stage 2
    resumed = load_file(str(distill(recipe, resume=True).student_dir / "model.safetensors"))
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


@pytest.mark.parametrize(("point", "step"), [("after-checkpoint", BOUNDARY), ("mid-step", BOUNDARY)])
def test_sigkill_at_the_stage_boundary_then_resume_is_exact(tmp_path, tiny_teacher_mlm, tiny_corpus, point, step):
    """Killed right after the boundary checkpoint, or inside the first step of stage 2: ``--resume`` re-enters
    stage 2 (objective, masking, trainable set, schedule) and ends with the uninterrupted weights, bit for bit."""
    reference = load_file(str(distill(staged(tmp_path, tiny_teacher_mlm, tiny_corpus, name="ref")).student_dir
                              / "model.safetensors"))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(staged(tmp_path, tiny_teacher_mlm, tiny_corpus, name="victim")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def run(*args):
        return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)

    killed = run(KILLER, point, step, path, "--overwrite")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = tmp_path / "victim"
    assert [int(p.name[5:]) for p in checkpoints(out / "checkpoints")] == [4, BOUNDARY]
    resumed = run("-m", "bertpress", "distill", path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = load_file(str(out / "student" / "model.safetensors"))
    for k in reference:
        assert torch.equal(got[k], reference[k]), k
    stages_logged = read_metrics(out / "metrics.jsonl", "stage")
    assert [r["step"] for r in stages_logged] == [0, BOUNDARY], "the boundary is logged once"


def test_stage_part_beyond_the_student_is_refused(tmp_path, tiny_teacher_mlm, tiny_corpus):
    recipe = staged(tmp_path, tiny_teacher_mlm, tiny_corpus)
    recipe["stages"][0]["trainable"] = ["layers 2-3"]
    with pytest.raises(BertpressError, match=r"'layers 2-3' names layer 3 but the student has 2: use layers 1-2"):
        distill(recipe)
    assert not (tmp_path / "staged").exists(), "refused before anything is written"


def test_projections_are_seeded_by_the_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus):
    """A narrower student's projection starts from the recipe's seed, whatever the process did before."""
    recipe = {"seed": 2, "teacher": {"name_or_path": str(tiny_teacher_mlm)},
              "student": {"num_layers": 2, "init": "etd-rand", "hidden_size": 16, "num_heads": 2},
              "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
              "train": {"max_steps": 2, "batch_size": 4, "eval_every": 0, "save_every": 0, "num_workers": 0}}
    a = distill({**recipe, "output_dir": str(tmp_path / "a")})
    torch.rand(1000)  # the global RNG moves on
    b = distill({**recipe, "output_dir": str(tmp_path / "b")})
    assert a.summary["objective"]["projection"]
    wa, wb = load_file(str(a.student_dir / "model.safetensors")), load_file(str(b.student_dir / "model.safetensors"))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_the_worked_recipe_in_the_docs_is_valid():
    from bertpress.train.build import resolve_recipe

    doc = (Path(__file__).parents[2] / "docs" / "stages.md").read_text()
    recipe = resolve_recipe(yaml.safe_load(doc.split("```yaml\n")[1].split("```")[0]))
    one, two = recipe.resolved_stages()
    assert recipe.train.max_steps == 500 and one.trainable == ["layers 1-3"] and one.objective.name == "matches"
    assert two.objective.name == "tinybert" and two.lr == 1e-4
