import pytest
import torch
from transformers import AutoModel

from bertpress.errors import BertpressError
from bertpress.init import InitContext, initialise
from bertpress.models.student import StudentShape, build_student, student_config
from bertpress.models.teacher import load_teacher


def test_default_layers_are_the_skip_mapping():
    """select's default is the ``skip`` mapping, DistilBERT's every-other rule from the first layer."""
    from bertpress.objectives.mapping import skip

    assert skip(3, 6) == [1, 3, 5]
    assert skip(6, 12) == [1, 3, 5, 7, 9, 11]
    assert skip(4, 4) == [1, 2, 3, 4]


def test_select_all_layers_reproduces_teacher(tiny_teacher):
    teacher = load_teacher(str(tiny_teacher))
    cfg = student_config(teacher.model.config, StudentShape(num_layers=4))
    student = build_student(cfg, mlm_head=teacher.has_mlm_head).eval()
    plan = initialise("select", InitContext(teacher, student, seed=0), {"layers": [1, 2, 3, 4]})
    assert plan["layers"] == [1, 2, 3, 4]
    ids = torch.randint(5, cfg.vocab_size, (3, 17))
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    with torch.no_grad():
        out_t = teacher.model(input_ids=ids, attention_mask=mask)
        out_s = student(input_ids=ids, attention_mask=mask)
    key = "logits" if teacher.has_mlm_head else "last_hidden_state"
    torch.testing.assert_close(out_s[key], out_t[key], atol=1e-5, rtol=0)


def test_select_chosen_layers_copy_those_weights(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    student = build_student(student_config(teacher.model.config, StudentShape(num_layers=2)), mlm_head=True)
    initialise("select", InitContext(teacher, student, seed=0), {"layers": [2, 4]})
    t_layers, s_layers = teacher.parts.layers, student.base_model.encoder.layer
    assert torch.equal(s_layers[0].output.dense.weight, t_layers[1].output.dense.weight)
    assert torch.equal(s_layers[1].attention.self.query.weight, t_layers[3].attention.self.query.weight)


def test_select_refuses_narrower_student(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    student = build_student(student_config(teacher.model.config, StudentShape(hidden_size=16, num_heads=2)),
                            mlm_head=True)
    with pytest.raises(BertpressError, match="etd-rand"):
        initialise("select", InitContext(teacher, student, seed=0))


def test_teacher_head_detection_and_frozen(tiny_teacher_mlm, tiny_teacher_bare, tmp_path):
    t = load_teacher(str(tiny_teacher_mlm))
    assert t.has_mlm_head and not t.model.training
    assert not any(p.requires_grad for p in t.model.parameters())
    b = load_teacher(str(tiny_teacher_bare))
    assert not b.has_mlm_head and "bare encoder" in b.describe()
    student = build_student(student_config(b.model.config, StudentShape()), mlm_head=False)
    student.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).config.num_hidden_layers == 2
