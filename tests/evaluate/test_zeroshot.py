"""Zero-shot STS: the metric against a hand-computed Spearman, pooling from sentence-transformers configs (mean
and CLS fixtures, and a student that inherits its teacher's), and the ``stsb-zeroshot`` task end to end."""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from bertpress.cli import main
from bertpress.errors import BertpressError
from bertpress.evaluate.zeroshot import embed, similarity_scores, sts_zeroshot
from bertpress.models.pooling import model_pooling, sentence_transformers_pooling

from tiny_models import save_tiny_teacher


def test_spearman_matches_hand_computation():
    # predicted ranks 1 3 2 5 4 against gold ranks 1 2 3 4 5: d = 0 1 -1 1 -1, rho = 1 - 6*4 / (5*(25-1)) = 0.8
    scores = similarity_scores([0.1, 0.4, 0.35, 0.8, 0.7], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert scores["spearman"] == pytest.approx(80.0)
    assert scores["score"] == scores["spearman"]
    with pytest.raises(BertpressError, match="at least 2 pairs with varying scores"):
        similarity_scores([0.5, 0.5], [1.0, 2.0])


def _sentence_transformer(path, mode: str):
    """The files sentence-transformers writes for a Transformer + Pooling (+ Normalize) stack."""
    (path / "1_Pooling").mkdir()
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean", "pooling_mode_max_tokens": False}))
    return path


@pytest.fixture(scope="module", params=["mean", "cls"])
def st_model(request, tmp_path_factory):
    path = save_tiny_teacher(tmp_path_factory.mktemp(f"st_{request.param}"), mlm=False)
    return request.param, _sentence_transformer(path, request.param)


def test_pooling_follows_the_sentence_transformers_config(st_model, tmp_path):
    mode, path = st_model
    assert sentence_transformers_pooling(path) == mode
    assert model_pooling(path)[0] == mode
    # a bertpress student of that teacher (no modules.json of its own) is pooled like its teacher
    student = tmp_path / "student"
    shutil.copytree(path, student, ignore=shutil.ignore_patterns("modules.json", "1_Pooling"))
    (student / "bertpress.json").write_text(json.dumps({"teacher": {"source": str(path)}}))
    assert model_pooling(student) == (mode, f"its teacher's sentence-transformers config ({path})")
    (student / "bertpress.json").unlink()
    assert model_pooling(student)[0] == "mean"


def test_embeddings_are_the_configured_pooling(st_model):
    mode, path = st_model
    model, tok = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    sentences = ["the city was new", "a river"]
    got = embed(model, tok, sentences, pooling=mode)
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = hidden[:, 0] if mode == "cls" else (hidden * mask).sum(1) / mask.sum(1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # the score is the Spearman of the pairs' cosine similarities
    pairs, gold = [("the city", "a city"), ("the river", "the war"), ("a film", "the team")], [4.0, 1.0, 2.5]
    a, b = embed(model, tok, [x for x, _ in pairs], pooling=mode), embed(model, tok, [y for _, y in pairs], pooling=mode)
    cos = F.cosine_similarity(a, b).tolist()
    assert sts_zeroshot(model, tok, pairs, gold, pooling=mode) == similarity_scores(cos, gold)


def test_stsb_zeroshot_task_end_to_end(task_data, tiny_pair, tmp_path, capsys):
    teacher, student = tiny_pair
    args = ["evaluate", f"s={student}", "--teacher", f"t={teacher}", "--tasks", "stsb-zeroshot", "--data-dir",
            str(task_data), "--output-dir", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache"),
            "--no-latency", "--no-progress"]
    assert main(args) == 0
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    rows = {m["label"]: m["tasks"]["stsb-zeroshot"] for m in report["models"]}
    for row in rows.values():
        run = row["runs"][0]
        assert run["pooling"] == "mean" and run["dev_examples"] == 16  # every STS-B dev pair of the fixture
        assert -100 <= row["mean"]["score"] <= 100 and row["n"] == 1
    assert "STS-B 0-shot" in (tmp_path / "report" / "results.md").read_text()
    first = rows["s"]["mean"]["score"]
    assert main([*args, "--set", "pooling=cls"]) == 0  # the pooling is part of the cache key
    again = json.loads((tmp_path / "report" / "results.json").read_text())["models"][1]["tasks"]["stsb-zeroshot"]
    assert again["runs"][0]["pooling"] == "cls" and again["mean"]["score"] != first
