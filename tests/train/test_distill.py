"""The loop end to end on tiny models: learning, exact resume, outputs that load with AutoModel."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from bertpress.errors import BertpressError
from bertpress.train.data import ResumableBatchSampler
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill


@pytest.mark.parametrize(("objective", "term", "ratio"), [
    ("tinybert", "loss", 0.9), ("minilm", "loss", 0.9),
    ("distilbert", "cos", 0.9),  # its soft-target CE has the teacher's entropy as a floor
])
def test_short_run_lowers_validation_loss(tiny_recipe, objective, term, ratio):
    result = distill(tiny_recipe(objective={"name": objective}))
    valid = read_metrics(result.output_dir / "metrics.jsonl", "valid")
    assert [v["step"] for v in valid] == [0, 20, 40]
    assert valid[-1]["loss"] < valid[0]["loss"]
    assert valid[-1][term] < ratio * valid[0][term], valid
    assert result.summary["final"]["loss"] == pytest.approx(valid[-1]["loss"])


def test_output_loads_with_auto_classes(tiny_recipe):
    result = distill(tiny_recipe(train={"max_steps": 5}))
    out, student = result.output_dir, result.student_dir
    assert student == out / "student"
    model = AutoModel.from_pretrained(student)
    assert model.config.num_hidden_layers == 2
    assert isinstance(AutoModelForMaskedLM.from_pretrained(student), torch.nn.Module)
    assert AutoTokenizer.from_pretrained(student)("the city")["input_ids"][0] == 2
    summary = json.loads((out / "bertpress.json").read_text())
    assert json.loads((student / "bertpress.json").read_text()) == summary
    assert summary["mapping"] == [2, 4]
    assert summary["tokens_seen"] == 5 * 8 * 32
    assert summary["recipe"]["objective"]["name"] == "tinybert"
    assert summary["init"]["name"] == "random"
    assert {"parameters", "num_layers"} <= summary["student"].keys()
    assert (out / "recipe.yaml").read_text() == (student / "recipe.yaml").read_text()
    assert list((out / "tensorboard").iterdir()) and (out / "metrics.jsonl").is_file()
    # the student directory is what a hub upload takes: no training state, no logs
    assert not {"checkpoints", "tensorboard", "metrics.jsonl"} & {p.name for p in student.iterdir()}


def _weights(out):
    return load_file(str(out / "student" / "model.safetensors"))


def test_resume_matches_uninterrupted_run(tiny_recipe, tmp_path):
    # dropout on (the fixture's real 0.1), so the dropout RNG must continue exactly across the resume
    common = {"student": {"init": "random"}, "objective": {"name": "distilbert"}}
    full = distill(tiny_recipe(output_dir=str(tmp_path / "full"), **common))
    assert AutoModel.from_pretrained(full.student_dir).config.hidden_dropout_prob == 0.1
    interrupted = tiny_recipe(output_dir=str(tmp_path / "cut"), **common)
    distill(interrupted, stop_after=27)  # last checkpoint at step 20, then 7 more steps are lost
    resumed = distill(interrupted, resume=True)
    a, b = _weights(full.output_dir), _weights(resumed.output_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit for bit
    assert resumed.summary["tokens_seen"] == full.summary["tokens_seen"]
    steps = [r["step"] for r in read_metrics(resumed.output_dir / "metrics.jsonl", "train")]
    assert steps == sorted(set(steps)), "metrics of the lost steps are replaced, not duplicated"


def test_resuming_a_finished_run_gives_the_same_weights(tiny_recipe, tmp_path):
    """``--resume`` of a finished run replays the steps after its last checkpoint, with dropout on."""
    recipe = tiny_recipe(output_dir=str(tmp_path / "done"), train={"max_steps": 30})
    first = _weights(distill(recipe).output_dir)
    again = _weights(distill(recipe, resume=True).output_dir)  # from the step-20 checkpoint
    for k in first:
        assert torch.equal(first[k], again[k]), k


def test_refuses_existing_run_without_flag(tiny_recipe):
    recipe = tiny_recipe(train={"max_steps": 2})
    distill(recipe)
    with pytest.raises(BertpressError, match="already holds a run"):
        distill(recipe)
    distill(recipe, overwrite=True)
    changed = tiny_recipe(train={"max_steps": 2, "lr": 5e-4})
    with pytest.raises(BertpressError, match=r"recipe changed \(train.lr"):
        distill(changed, resume=True)


def test_sampler_resumes_mid_epoch():
    full = list(ResumableBatchSampler(10, 3, seed=1, start=0, total=7))
    assert sorted(i for b in full[:3] for i in b) == sorted(set(i for b in full[:3] for i in b))
    assert list(ResumableBatchSampler(10, 3, seed=1, start=4, total=7)) == full[4:]


def test_trackers_tensorboard_optional_and_accelerate_trackers_receive_the_scalars(tiny_recipe, tmp_path):
    from accelerate import Accelerator
    from accelerate.tracking import GeneralTracker

    from bertpress.train.run import make_accelerator

    class Recording(GeneralTracker):
        name, requires_logging_directory, main_process_only = "recording", False, True

        def __init__(self) -> None:
            super().__init__()
            self.config, self.logged = None, []

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values) -> None:
            self.config = values

        def log(self, values, step=None, **kwargs) -> None:
            self.logged.append((step, dict(values)))

    plain = distill(tiny_recipe(output_dir=str(tmp_path / "plain"), train={"max_steps": 4, "report_to": []}))
    assert not (plain.output_dir / "tensorboard").exists() and (plain.output_dir / "metrics.jsonl").is_file()
    recorder = Recording()
    make_accelerator("no")  # resets the shared state a previous run left
    run = distill(tiny_recipe(output_dir=str(tmp_path / "tracked"), train={"max_steps": 4, "log_every": 2}),
                  accelerator=Accelerator(log_with=[recorder]))
    assert (run.output_dir / "tensorboard").is_dir()  # the default report_to
    assert recorder.config["train.max_steps"] == 4 and recorder.config["name"] == "bertpress"
    train_steps = [step for step, values in recorder.logged if "train/loss" in values]
    assert train_steps == [2, 4]
    assert any("valid/loss" in values for _, values in recorder.logged)


def test_missing_tracker_package_is_refused_before_writing(tiny_recipe, tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    recipe = tiny_recipe(output_dir=str(tmp_path / "wandb"), train={"report_to": ["tensorboard", "wandb"]})
    with pytest.raises(BertpressError, match=r"train.report_to 'wandb' needs the wandb package: pip install wandb"):
        distill(recipe)
    assert not (tmp_path / "wandb").exists()


def test_a_run_directory_names_its_student(tiny_recipe, tmp_path):
    """A run directory stands for its ``student/`` wherever a model is taken: here, as the teacher of a next run."""
    from bertpress.models.teacher import resolve_model

    first = distill(tiny_recipe(train={"max_steps": 2}))
    assert resolve_model(str(first.output_dir)) == str(first.student_dir)
    assert resolve_model(str(first.student_dir)) == str(first.student_dir)  # a model directory stays itself
    assert resolve_model("org/model") == "org/model"  # hub ids are left alone
    second = distill(tiny_recipe(output_dir=str(tmp_path / "second"), teacher={"name_or_path": str(first.output_dir)},
                                 student={"num_layers": 1, "init": "select"}, train={"max_steps": 2}))
    assert second.summary["teacher"]["parameters"] == first.summary["student"]["parameters"]
    assert AutoModel.from_pretrained(second.student_dir).config.num_hidden_layers == 1
