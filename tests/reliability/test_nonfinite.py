"""A NaN/Inf loss stops the run naming the step and the term (keeping the last good checkpoint), or is skipped."""

import math

import pytest
import torch
from safetensors.torch import load_file

from bertpress.errors import BertpressError
from bertpress.objectives.matches import MatchObjective
from bertpress.train.checkpoint import checkpoints
from bertpress.train.run import distill


@pytest.fixture
def poisoned(monkeypatch):
    """The 7th training batch gets a NaN hidden-state term (validation batches are left alone)."""
    original = MatchObjective.terms
    calls = {"n": 0}

    def terms(self, student, teacher, batch):
        out = original(self, student, teacher, batch)
        if torch.is_grad_enabled() and self.training:
            calls["n"] += 1
            if calls["n"] == 1 + 7:  # the first call is the reachability probe before training
                out["hidden"] = out["hidden"] * float("nan")
        return out

    monkeypatch.setattr(MatchObjective, "terms", terms)


def _recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, mode):
    return {"output_dir": str(tmp_path / mode), "teacher": {"name_or_path": str(tiny_teacher_mlm)},
            "student": {"num_layers": 2, "init": "random"},
            "data": {"sources": [str(tiny_corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
            "train": {"max_steps": 10, "batch_size": 4, "save_every": 4, "eval_every": 0, "num_workers": 0,
                      "on_nonfinite": mode}}


def test_stop_names_step_and_term(poisoned, tmp_path, tiny_teacher_mlm, tiny_corpus):
    with pytest.raises(BertpressError) as err:
        distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "stop"))
    assert err.value.exit_code == 3
    msg = str(err.value)
    assert msg.startswith("non-finite loss at step 7 (term 'hidden' = nan)")
    assert "step-00000004 with --resume" in msg
    out = tmp_path / "stop"
    assert [p.name for p in checkpoints(out / "checkpoints")] == ["step-00000004"]
    assert not (out / "bertpress.json").exists()


def test_skip_counts_and_finishes(poisoned, tmp_path, tiny_teacher_mlm, tiny_corpus):
    result = distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "skip"))
    assert result.summary["skipped_batches"] == 1 and result.summary["steps"] == 10
    weights = load_file(str(result.student_dir / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert math.isfinite(result.summary["final"]["loss"])


def test_stop_reads_losses_only_at_sync_points(poisoned, monkeypatch, tmp_path, tiny_teacher_mlm, tiny_corpus):
    """No host synchronisation per step: the kept losses are read at log lines, checkpoints and the end only, and
    the error still names the first bad step (7, read at the log line of step 10)."""
    from bertpress.train.nonfinite import NonFiniteGuard

    checked = []
    original = NonFiniteGuard.check

    def check(self):
        checked.append([s for s, _, _ in self.pending])
        original(self)

    monkeypatch.setattr(NonFiniteGuard, "check", check)
    recipe = _recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "stop")
    recipe["train"].update(save_every=0, log_every=5)
    with pytest.raises(BertpressError, match=r"^non-finite loss at step 7 \(term 'hidden' = nan\).*from the start"):
        distill(recipe)
    assert checked == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert not (tmp_path / "stop" / "bertpress.json").exists()
