"""A student of a sentence-transformers teacher carries the teacher's module stack: ``SentenceTransformer(student)``
pools (mean or CLS), normalises and truncates like the teacher."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from bertpress.models.pooling import pool
from bertpress.train.run import distill

from tiny_models import save_tiny_teacher, tiny_text


def _stack(path, mode: str, normalize: bool = True, dense: bool = False):
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if dense:
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if normalize:
        modules.append({"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"})
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": mode == "cls", "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    return path


def _recipe(tmp_path, teacher, **student):
    (tmp_path / "c.txt").write_text(tiny_text())
    return {"output_dir": str(tmp_path / "run"), "teacher": {"name_or_path": str(teacher)},
            "student": {"num_layers": 2, "init": "random", **student},
            "data": {"sources": [str(tmp_path / "c.txt")], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
            "objective": {"name": "tinybert"},
            "train": {"max_steps": 2, "batch_size": 4, "eval_every": 0, "save_every": 0, "num_workers": 0}}


@pytest.mark.parametrize("mode", ["mean", "cls"])
def test_sentence_transformers_round_trip(tmp_path, mode):
    from sentence_transformers import SentenceTransformer

    teacher = _stack(save_tiny_teacher(tmp_path / "teacher", mlm=False), mode)
    result = distill(_recipe(tmp_path, teacher, hidden_size=16, num_heads=2, init="random"))
    out = result.student_dir
    assert result.summary["sentence_transformers"] is True
    assert json.loads((out / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"] == 16
    st = SentenceTransformer(str(out), device="cpu")
    assert st.max_seq_length == 24
    sentences = ["the city was new", "a river and the war in the north of the world " * 3]
    got = torch.as_tensor(st.encode(sentences))
    model, tok = AutoModel.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    batch = tok(sentences, padding=True, truncation=True, max_length=24, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    expected = F.normalize(pool(hidden, batch["attention_mask"], mode), dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # publishing again (``--resume`` of the finished run) replaces the module folders
    again = distill(_recipe(tmp_path, teacher, hidden_size=16, num_heads=2, init="random"), resume=True)
    assert again.summary["sentence_transformers"] is True and (out / "1_Pooling" / "config.json").is_file()


def test_stack_with_trained_modules_is_left_out(tmp_path, caplog):
    teacher = _stack(save_tiny_teacher(tmp_path / "teacher", mlm=False), "mean", dense=True)
    with caplog.at_level("WARNING"):
        result = distill(_recipe(tmp_path, teacher))
    assert result.summary["sentence_transformers"] is False
    assert not (result.output_dir / "modules.json").exists()
    assert "trained modules (sentence_transformers.models.Dense)" in caplog.text


def test_plain_teacher_gives_a_plain_student(tmp_path):
    teacher = save_tiny_teacher(tmp_path / "teacher", mlm=False)
    result = distill(_recipe(tmp_path, teacher))
    assert result.summary["sentence_transformers"] is False and not (result.output_dir / "modules.json").exists()
