"""``teacher.fit_mlm_head``: a teacher without an MLM head gets a fitted one (tied decoder, frozen encoder, cached),
so DistilBERT's soft-target and MLM terms run on it."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from bertpress.errors import BertpressError
from bertpress.train.build import resolve_recipe
from bertpress.train.run import distill

from tiny_models import tiny_vocab


def _recipe(tmp_path, teacher, corpus, name, **teacher_fields):
    return {"seed": 3, "output_dir": str(tmp_path / name),
            "teacher": {"name_or_path": str(teacher), "fit_mlm_head": {"steps": 60, "batch_size": 8, "lr": 1e-2},
                        **teacher_fields},
            "student": {"num_layers": 2, "init": "select"}, "objective": {"name": "distilbert"},
            "data": {"sources": [str(corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
            "train": {"max_steps": 4, "batch_size": 4, "eval_every": 0, "save_every": 0, "num_workers": 0}}


def test_fitted_head_enables_the_triple_loss_and_is_cached(tmp_path, tiny_teacher_bare, tiny_corpus):
    first = distill(_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, "a"))
    assert set(first.summary["final"]) == {"loss", "ce", "mlm", "cos"}
    assert first.summary["teacher"]["mlm_head"] == "fitted (teacher.fit_mlm_head)"
    fits = list((tmp_path / "cache" / "mlm_head").glob("*/fit.json"))
    assert len(fits) == 1
    report = json.loads(fits[0].read_text())
    # the untrained head starts near log(vocabulary); fitting lowers the masked-token loss
    assert report["initial_loss"] == pytest.approx(math.log(len(tiny_vocab())), abs=1.0)
    assert report["loss"] < report["initial_loss"] - 0.3 and report["accuracy"] > 0.05
    head = load_file(str(fits[0].parent / "head.safetensors"))
    assert not any(k.startswith("bert.") for k in head), "only the head's own tensors are fitted and cached"
    second = distill(_recipe(tmp_path, tiny_teacher_bare, tiny_corpus, "b"))  # the cached head
    assert len(list((tmp_path / "cache" / "mlm_head").glob("*/fit.json"))) == 1
    a = load_file(str(first.student_dir / "model.safetensors"))
    b = load_file(str(second.student_dir / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert "cls.predictions.transform.dense.weight" in a, "the student carries the (copied) head"


def test_a_teacher_with_a_head_keeps_its_own(tmp_path, tiny_teacher_mlm, tiny_corpus):
    run = distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "own"))
    assert run.summary["teacher"]["mlm_head"] is True
    assert not (tmp_path / "cache" / "mlm_head").exists()


def test_refusing_and_fitting_a_head_contradict():
    with pytest.raises(BertpressError, match="teacher.mlm_head false refuses an MLM head that teacher.fit_mlm_head"):
        resolve_recipe({"output_dir": "o", "data": {"sources": ["x"]},
                        "teacher": {"mlm_head": False, "fit_mlm_head": {"steps": 5}}})
