"""Every supported model type, in its real layout (dropout as the real checkpoints, factorised ELECTRA embeddings,
RoBERTa offsets, DistilBERT field names, MPNet and DeBERTa relative positions, ModernBERT fused QKV and GLU):
full-shape ``select`` / ETD reproduce the teacher, and every objective starts at zero distance from it."""

import pytest
import torch

from bertpress.init import InitContext, initialise
from bertpress.models.anatomy import anatomy
from bertpress.models.student import StudentShape, build_student, student_config
from bertpress.models.teacher import load_teacher
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill

from layouts import MODEL_TYPES, REAL_DROPOUT, save_layout_teacher
from tiny_models import tiny_text


@pytest.fixture(scope="module", params=MODEL_TYPES)
def layout_teacher(request, tmp_path_factory):
    return request.param, save_layout_teacher(tmp_path_factory.mktemp(request.param), request.param)


def _outputs(model, ids):
    model.eval()
    with torch.no_grad():
        return model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state


@pytest.mark.parametrize("init", ["select", "etd-rand", "etd-impt"])
def test_full_shape_init_reproduces_teacher(layout_teacher, init):
    model_type, path = layout_teacher
    teacher = load_teacher(str(path))
    field, value = REAL_DROPOUT.get(model_type, ("hidden_dropout_prob", 0.1))
    assert getattr(teacher.model.config, field) == value, "the fixture keeps the real dropout"
    cfg = student_config(teacher.model.config, StudentShape(4, None, None, None))
    torch.manual_seed(1)
    student = build_student(cfg, mlm_head=True)
    ids = torch.randint(5, teacher.model.config.vocab_size, (3, 20))

    def sample(n):
        for _ in range(n):
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    initialise(init, InitContext(teacher, student, 0, sample), {"layers": [1, 2, 3, 4]})
    assert anatomy(student).factorised == (model_type == "electra")
    torch.testing.assert_close(_outputs(student, ids), _outputs(teacher.model, ids), atol=1e-5, rtol=0)
    t_sd = teacher.model.state_dict()
    for k, v in student.state_dict().items():  # every tensor, MLM head and embedding projection included
        torch.testing.assert_close(v, t_sd[k], atol=0, rtol=0, msg=k)


def test_narrow_etd_keeps_factorised_embeddings_whole(tmp_path):
    path = save_layout_teacher(tmp_path / "electra", "electra")
    teacher = load_teacher(str(path))
    cfg = student_config(teacher.model.config, StudentShape(2, 24, 3, 48))
    student = build_student(cfg, mlm_head=True)
    plan = initialise("etd-rand", InitContext(teacher, student, 0), {})
    t, s = anatomy(teacher.model), anatomy(student)
    assert s.factorised and cfg.embedding_size == 16
    assert torch.equal(s.embeddings.word_embeddings.weight, t.embeddings.word_embeddings.weight)
    rows = torch.as_tensor(plan["hidden_dims"])
    assert torch.equal(s.embedding_output.weight, t.embedding_output.weight[rows])


#: per objective, the terms that are exactly zero when the student is the teacher (the rest have a floor)
ZERO_TERMS = {"tinybert": ("embedding", "hidden", "attention"), "minilm": ("attention", "value"),
              "distilbert": ("cos",)}


@pytest.mark.parametrize("objective", list(ZERO_TERMS))
def test_every_objective_starts_at_the_teacher(layout_teacher, objective, tmp_path):
    """A full-depth ``select`` student is the teacher, so every distance term is 0 before training."""
    model_type, path = layout_teacher
    (tmp_path / "c.txt").write_text(tiny_text())
    recipe = {"output_dir": str(tmp_path / "run"), "teacher": {"name_or_path": str(path)},
              "student": {"num_layers": 4, "init": "select", "init_args": {"layers": [1, 2, 3, 4]}},
              "mapping": {"strategy": "explicit", "layers": [1, 2, 3, 4]},
              "data": {"sources": [str(tmp_path / "c.txt")], "block_size": 32, "cache_dir": str(tmp_path / "cache")},
              "objective": {"name": objective},
              "train": {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "eval_every": 0, "save_every": 0,
                        "num_workers": 0}}
    result = distill(recipe)
    start = read_metrics(result.output_dir / "metrics.jsonl", "valid")[0]
    for term in ZERO_TERMS[objective]:
        assert abs(start[term]) < 1e-5, (model_type, term, start)
    final = result.summary["final"]
    assert all(torch.isfinite(torch.tensor(v)) for v in final.values())


def test_unsupported_model_type_is_refused_in_one_line(tmp_path):
    from transformers import GPT2Config, GPT2Model

    from bertpress.errors import BertpressError

    from tiny_models import tiny_tokenizer

    GPT2Model(GPT2Config(vocab_size=120, n_embd=32, n_layer=2, n_head=4)).save_pretrained(tmp_path / "gpt2")
    tiny_tokenizer().save_pretrained(tmp_path / "gpt2")
    with pytest.raises(BertpressError, match=r"model type 'gpt2' is not supported: use a teacher of type bert, "
                                             r"ernie, .*distilbert, mpnet, deberta-v2, modernbert$"):
        load_teacher(str(tmp_path / "gpt2"))


@pytest.mark.parametrize("model_type", ["distilbert", "mpnet", "deberta-v2", "modernbert"])
def test_narrow_etd_slices_each_layout(model_type, tmp_path):
    """Half the heads and neurons: fused Q/K/V thirds and GLU halves take the same heads / neurons, shared
    per-hidden tables their hidden columns; the narrow student runs."""
    teacher = load_teacher(str(save_layout_teacher(tmp_path / model_type, model_type)))
    cfg = student_config(teacher.model.config, StudentShape(2, 16, 2, 32))
    student = build_student(cfg, mlm_head=True)
    plan = initialise("etd-rand", InitContext(teacher, student, 0), {"layers": [2, 4]})
    from bertpress.models.anatomy import layer_width_parts

    t, s = layer_width_parts(anatomy(teacher.model), 3), layer_width_parts(anatomy(student), 1)
    hidden, d = torch.as_tensor(plan["hidden_dims"]), anatomy(teacher.model).head_dim
    att = torch.as_tensor([h * d + j for h, dims in zip(plan["heads"][1], plan["head_dims"][1], strict=True)
                           for j in dims])
    width = anatomy(teacher.model).num_heads * d
    rows = torch.cat([att, att + width, att + 2 * width]) if t.query.chunk is not None else att
    torch.testing.assert_close(s.query.module.weight, t.query.module.weight[rows][:, hidden], atol=0, rtol=0)
    neurons = torch.as_tensor(plan["neurons"][1])
    ffn_rows = torch.cat([neurons, neurons + t.neurons]) if t.glu else neurons
    torch.testing.assert_close(s.intermediate.weight, t.intermediate.weight[ffn_rows][:, hidden], atol=0, rtol=0)
    ids = torch.randint(5, teacher.model.config.vocab_size, (2, 12))
    assert torch.isfinite(_outputs(student, ids)).all()
