"""Match lists: presets expand into matches, a hand-written list trains like its preset, bad matches are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from bertpress.errors import BertpressError
from bertpress.train.build import resolve_recipe
from bertpress.train.run import distill

#: the tinybert preset for a 2-layer student along the uniform mapping of a 4-layer teacher (2, 4), written out
TINYBERT_AS_MATCHES = [
    {"student": "hidden:0", "teacher": "hidden:0", "loss": "mse", "term": "embedding"},
    {"student": "hidden:1", "teacher": "hidden:2", "loss": "mse", "term": "hidden"},
    {"student": "hidden:2", "teacher": "hidden:4", "loss": "mse", "term": "hidden"},
    {"student": "attention_scores:1", "teacher": "attention_scores:2", "loss": "attention_mse", "term": "attention"},
    {"student": "attention_scores:2", "teacher": "attention_scores:4", "loss": "attention_mse", "term": "attention"},
]


def _recipe(tmp_path, teacher, corpus, name, objective, **student):
    return {"seed": 4, "output_dir": str(tmp_path / name), "teacher": {"name_or_path": str(teacher)},
            "student": {"num_layers": 2, "init": "select", **student}, "objective": objective,
            "data": {"sources": [str(corpus)], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
            "train": {"max_steps": 8, "batch_size": 4, "lr": 1e-3, "eval_every": 4, "save_every": 0,
                      "num_workers": 0}}


@pytest.mark.parametrize("shape", [{}, {"init": "etd-rand", "hidden_size": 16, "num_heads": 4}],
                         ids=["same-width", "narrower-projected"])
def test_written_matches_train_like_the_tinybert_preset(tmp_path, tiny_teacher_mlm, tiny_corpus, shape):
    preset = distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "preset", {"name": "tinybert"}, **shape))
    written = distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "written",
                              {"name": "matches", "matches": TINYBERT_AS_MATCHES}, **shape))
    a = load_file(str(preset.student_dir / "model.safetensors"))
    b = load_file(str(written.student_dir / "model.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert preset.summary["final"] == written.summary["final"]  # same terms, same names, same values
    expanded = json.loads((preset.output_dir / "bertpress.json").read_text())["objective"]["matches"]
    assert [(m["student"], m["teacher"], m["loss"], m["term"]) for m in expanded] == [
        (m["student"], m["teacher"], m["loss"], m["term"]) for m in TINYBERT_AS_MATCHES]
    assert all(m.get("projection") for m in expanded[:3]) and expanded[3]["heads"] == 4


def test_distilbert_preset_expands_into_its_three_terms(tmp_path, tiny_teacher_mlm, tiny_corpus):
    run = distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "d", {"name": "distilbert"}))
    matches = run.summary["objective"]["matches"]
    assert [(m["student"], m["teacher"], m["loss"], m["weight"]) for m in matches] == [
        ("logits", "logits", "soft_cross_entropy", 5.0), ("logits", "labels", "mlm", 2.0),
        ("hidden:2", "hidden:4", "cosine", 1.0)]
    assert matches[0]["options"] == {"temperature": 2.0}
    assert set(run.summary["final"]) == {"loss", "ce", "mlm", "cos"}


def test_matches_reading_labels_mask_the_batch(tmp_path, tiny_teacher_mlm, tiny_corpus):
    objective = {"name": "matches", "matches": [{"student": "logits", "teacher": "labels", "loss": "mlm"},
                                                {"student": "hidden:2", "teacher": "hidden:4", "loss": "cosine",
                                                 "weight": 0.5}]}
    run = distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "m", objective))
    assert set(run.summary["final"]) == {"loss", "mlm:logits", "cosine:hidden:2"}
    f = run.summary["final"]
    assert f["loss"] == pytest.approx(f["mlm:logits"] + 0.5 * f["cosine:hidden:2"], rel=1e-5)


BASE = {"output_dir": "out", "data": {"sources": ["x.txt"]}}


def _matches(*matches):
    return {**BASE, "objective": {"name": "matches", "matches": list(matches)}}


@pytest.mark.parametrize(("recipe", "message"), [
    (_matches({"student": "hidden:1", "teacher": "hidden:2", "loss": "msee"}),
     r"objective.matches.0.loss: unknown loss 'msee': choose one of .*mse"),
    (_matches({"student": "hiddn:1", "teacher": "hidden:2", "loss": "mse"}),
     r"objective.matches.0.student: unknown feature 'hiddn:1': use hidden:N"),
    (_matches({"student": "labels", "teacher": "logits", "loss": "mlm"}), "labels are a teacher-side feature"),
    (_matches({"student": "hidden:1", "teacher": "attention_scores:2", "loss": "mse"}), "of different kinds"),
    (_matches({"student": "attention_scores:0", "teacher": "attention_scores:1", "loss": "attention_mse"}),
     "layer 0 is the embedding output"),
    ({**BASE, "objective": {"name": "matches"}}, r"objective.matches: Field required"),
])
def test_bad_matches_are_refused_in_one_line(recipe, message):
    with pytest.raises(BertpressError, match=message) as err:
        resolve_recipe(recipe)
    assert "\n" not in str(err.value)


def test_match_beyond_the_models_depth_is_refused_before_writing(tmp_path, tiny_teacher_mlm, tiny_corpus):
    objective = {"name": "matches", "matches": [{"student": "hidden:3", "teacher": "hidden:4", "loss": "mse"}]}
    with pytest.raises(BertpressError, match="the student has 2 layers, not 3"):
        distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "deep", objective))
    assert not (tmp_path / "deep").exists()


def test_one_term_with_two_weights_is_refused(tmp_path, tiny_teacher_mlm, tiny_corpus):
    objective = {"name": "matches", "matches": [
        {"student": "hidden:1", "teacher": "hidden:2", "loss": "mse", "term": "h"},
        {"student": "hidden:2", "teacher": "hidden:4", "loss": "mse", "term": "h", "weight": 2.0}]}
    with pytest.raises(BertpressError, match="term 'h' has matches with weights 1.0 and 2.0"):
        distill(_recipe(tmp_path, tiny_teacher_mlm, tiny_corpus, "w", objective))
