"""Progressive knowledge transfer (``schedule: progressive``) and per-part learning-rate multipliers, on a MobileBERT
student: what each layer's stage trains, at which rate, and exact resume inside a stage."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from bertpress.errors import BertpressError
from bertpress.train.build import build_run
from bertpress.train.callbacks import Callback
from bertpress.train.run import distill
from bertpress.train.stages import StageSchedule, stage_at

PER_LAYER, FINAL = 3, 2


def progressive(tmp_path, teacher, corpus, name="prog", lower="freeze", **schedule) -> dict:
    return {
        "seed": 3, "output_dir": str(tmp_path / name), "teacher": {"name_or_path": str(teacher)},
        "student": {"num_layers": 2, "architecture": "mobilebert", "init": "teacher-embeddings",
                    "architecture_options": {"bottleneck": 16, "embedding_size": 8, "num_ffn": 2}},
        "mapping": {"layers": [2, 4]},
        "objective": {"name": "mobilebert"},
        "schedule": {"name": "progressive", "steps_per_layer": PER_LAYER, "lower_layers": lower,
                     "final_steps": FINAL, **schedule},
        "data": {"sources": [str(corpus)], "block_size": 32, "validation_fraction": 0.1,
                 "cache_dir": str(tmp_path / "cache")},
        "train": {"batch_size": 4, "lr": 1e-3, "eval_every": 0, "save_every": 2, "log_every": 1, "num_workers": 0},
    }


class Snapshots(Callback):
    """The student's weights at every stage start, and each parameter group's lr over the base schedule's."""

    def __init__(self) -> None:
        self.weights: dict[str, dict[str, torch.Tensor]] = {}
        self.scales: list[tuple[int, str, dict[str, float]]] = []

    def on_stage_start(self, distiller, stage) -> None:
        self.weights[stage.name] = {k: v.clone() for k, v in distiller.student().state_dict().items()}

    def on_step_end(self, distiller, step, terms) -> None:
        base = StageSchedule(distiller.stages, distiller.cfg.lr)(step) * distiller.cfg.lr  # the next step's
        if base == 0:
            return
        names = {id(p): n for n, p in distiller.module.named_parameters()}
        by_layer: dict[str, float] = {}
        for group in distiller.optimizer.param_groups:
            for p in group["params"]:
                n = names[id(p)]
                if ".encoder.layer." in n:
                    by_layer[n.split(".encoder.layer.")[1].split(".")[0]] = round(group["lr"] / base, 6)
        self.scales.append((step, stage_at(distiller.stages, step).name, by_layer))


def changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_freeze_each_layer_stage_trains_only_its_layer_then_the_final_stage_trains_all(tmp_path, tiny_teacher_bare,
                                                                                      tiny_corpus):
    snap = Snapshots()
    result = distill(progressive(tmp_path, tiny_teacher_bare, tiny_corpus), callbacks=[snap])
    w = snap.weights
    assert list(w) == ["layer-1", "layer-2", "final"]
    one, two = changed(w["layer-1"], w["layer-2"]), changed(w["layer-2"], w["final"])
    assert one and all(k.startswith("encoder.layer.0.") for k in one), sorted(one)
    assert two and all(k.startswith("encoder.layer.1.") for k in two), sorted(two)
    final = load_file(str(result.student_dir / "model.safetensors"))
    assert not torch.equal(final["embeddings.word_embeddings.weight"], w["final"]["embeddings.word_embeddings.weight"])
    summary = json.loads((result.output_dir / "bertpress.json").read_text())
    stages = summary["stages"]
    assert [(s["name"], s["start"], s["steps"]) for s in stages] == [("layer-1", 0, 3), ("layer-2", 3, 3),
                                                                     ("final", 6, 2)]
    assert summary["steps"] == 2 * PER_LAYER + FINAL
    # a layer's stage reads only its own layer; the final stage (no MLM head) the recipe's objective on every layer
    assert {m["student"] for m in stages[0]["objective"]["matches"]} == {"hidden:1", "attention_scores:1"}
    assert {m["teacher"] for m in stages[1]["objective"]["matches"]} == {"hidden:4", "attention_scores:4"}
    assert {m["student"] for m in stages[2]["objective"]["matches"]} == {"hidden:1", "hidden:2", "attention_scores:1",
                                                                        "attention_scores:2"}
    assert stages[0]["trainable"] == ["layer 1", "projections"]


def test_slow_runs_the_current_layer_at_3x_and_the_layers_below_at_0_3x(tmp_path, tiny_teacher_bare, tiny_corpus):
    snap = Snapshots()
    distill(progressive(tmp_path, tiny_teacher_bare, tiny_corpus, lower="slow"), callbacks=[snap])
    by_stage = {}
    for _, stage, scales in snap.scales:
        by_stage.setdefault(stage, scales)
        assert by_stage[stage] == scales  # constant within a stage
    assert by_stage["layer-1"]["0"] == 3.0
    assert (by_stage["layer-2"]["0"], by_stage["layer-2"]["1"]) == (0.3, 3.0)
    assert (by_stage["final"]["0"], by_stage["final"]["1"]) == (1.0, 1.0)
    w = snap.weights
    assert all(k.startswith("encoder.layer.0.") for k in changed(w["layer-1"], w["layer-2"]))
    two = changed(w["layer-2"], w["final"])
    assert any(k.startswith("encoder.layer.0.") for k in two) and any(k.startswith("encoder.layer.1.") for k in two)
    assert not any(k.startswith("embeddings.") for k in two), "embeddings wait for the final stage"


def test_resume_inside_a_slowed_layer_stage_is_exact(tmp_path, tiny_teacher_bare, tiny_corpus):
    full = load_file(str(distill(progressive(tmp_path, tiny_teacher_bare, tiny_corpus, name="full", lower="slow"))
                         .student_dir / "model.safetensors"))
    recipe = progressive(tmp_path, tiny_teacher_bare, tiny_corpus, name="cut", lower="slow")
    distill(recipe, stop_after=5)  # last checkpoint at step 4, inside layer 2's stage
    resumed = load_file(str(distill(recipe, resume=True).student_dir / "model.safetensors"))
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


def test_with_an_mlm_head_the_final_stage_is_mlm_plus_soft_targets(tmp_path, tiny_teacher_mlm, tiny_corpus):
    from transformers import AutoModelForMaskedLM, MobileBertForMaskedLM

    run = build_run(progressive(tmp_path, tiny_teacher_mlm, tiny_corpus))
    final = run.stages[-1].objective.describe()
    assert {m["loss"] for m in final["matches"]} == {"soft_cross_entropy", "mlm"}
    assert final["weights"] == {"ce": 0.5, "mlm": 0.5}
    assert run.recipe.train.max_steps == 2 * PER_LAYER + FINAL
    result = distill(progressive(tmp_path, tiny_teacher_mlm, tiny_corpus, name="mlm"))
    assert set(result.summary["final"]) == {"loss", "ce", "mlm"}
    assert isinstance(AutoModelForMaskedLM.from_pretrained(result.student_dir), MobileBertForMaskedLM)


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {"max_steps": 5}}, r"train.max_steps 5 disagrees with the schedule's 3 stages \(8 steps\)"),
    ({"stages": [{"steps": 2}]}, r"stages and schedule both describe the stages: give one of them"),
    ({"objective": {"name": "minilm"}, "mapping": {"layers": [2, 4]}},
     r"stage layer-1: the objective has no match on student layers \[1\]"),
])
def test_inconsistent_schedules_are_refused_in_one_line(tmp_path, tiny_teacher_bare, tiny_corpus, change, message):
    recipe = progressive(tmp_path, tiny_teacher_bare, tiny_corpus)
    for key, value in change.items():
        recipe[key] = {**recipe[key], **value} if key == "train" else value
    with pytest.raises(BertpressError, match=message) as err:
        distill(recipe)
    assert "\n" not in str(err.value) and not (tmp_path / "prog").exists()
