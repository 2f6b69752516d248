import json

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM, ElectraConfig, RobertaConfig

from bertpress.errors import BertpressError
from bertpress.init import InitContext, initialise
from bertpress.init.etd import build_plan
from bertpress.init.extract import ExtractionPlan, extract
from bertpress.init.importance import SCORE_FILE
from bertpress.models.student import StudentShape, build_student, student_config
from bertpress.models.teacher import load_teacher

from tiny_models import tiny_config, tiny_text, tiny_tokenizer


def sample_batches(tokenizer, size: int = 4, length: int = 16):
    """``ctx.sample_batches`` over the tiny corpus: padded batches of ``size`` sentences."""
    lines = [line for line in tiny_text(80).splitlines() if line]

    def sample(n: int):
        for b in range(min(n, len(lines) // size)):
            enc = tokenizer(lines[b * size:(b + 1) * size], padding="max_length", truncation=True,
                            max_length=length, return_tensors="pt")
            yield {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    return sample


def make(teacher, cache_dir=None, seed=0, **shape):
    cfg = student_config(teacher.model.config, StudentShape(**shape))
    student = build_student(cfg, mlm_head=teacher.has_mlm_head)
    return student, InitContext(teacher, student, seed, sample_batches(teacher.tokenizer), cache_dir)


def inputs(vocab_size: int):
    ids = torch.randint(5, vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("name", ["etd-rand", "etd-impt"])
def test_full_shape_reproduces_teacher(tiny_teacher, name, tmp_path):
    teacher = load_teacher(str(tiny_teacher))
    student, ctx = make(teacher, tmp_path, num_layers=4)
    plan = initialise(name, ctx, {"importance_batches": 2} if name == "etd-impt" else {})
    assert plan["layers"] == [1, 2, 3, 4] and plan["hidden_dims"] == list(range(32))
    assert plan["heads"] == [[0, 1, 2, 3]] * 4 and plan["neurons"] == [list(range(64))] * 4
    x = inputs(teacher.model.config.vocab_size)
    with torch.no_grad():
        out_t, out_s = teacher.model(**x), student.eval()(**x)
    for key in ("logits",) if teacher.has_mlm_head else ("last_hidden_state", "pooler_output"):
        torch.testing.assert_close(out_s[key], out_t[key], atol=1e-5, rtol=0)


@pytest.mark.parametrize("config_cls", [RobertaConfig, ElectraConfig])
def test_other_architectures_reproduce_teacher(config_cls, tmp_path):
    config = config_cls(**tiny_config().to_dict() | {"model_type": config_cls.model_type, "pad_token_id": 0,
                                                     "embedding_size": 32})
    AutoModelForMaskedLM.from_config(config).save_pretrained(tmp_path / "t")
    tiny_tokenizer().save_pretrained(tmp_path / "t")
    teacher = load_teacher(str(tmp_path / "t"))
    assert teacher.has_mlm_head
    student, ctx = make(teacher, tmp_path, num_layers=4)
    initialise("etd-impt", ctx, {"importance_batches": 1})
    x = inputs(config.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(**x).logits, teacher.model(**x).logits, atol=1e-5, rtol=0)
    _, ctx = make(teacher, num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32)
    assert initialise("etd-rand", ctx)["tensors_copied"] > 0


def test_factorised_student_without_projection_is_refused(tmp_path):
    # a student as wide as the teacher's factorised embeddings would have no projection to slice: refused, one line
    config = ElectraConfig(**tiny_config().to_dict() | {"model_type": "electra", "embedding_size": 16})
    AutoModel.from_config(config).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    teacher = load_teacher(str(tmp_path))
    _, ctx = make(teacher, num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32)
    with pytest.raises(BertpressError, match=r"factorises its embeddings .* set student.hidden_size != 16"):
        initialise("etd-rand", ctx)


SHAPES = [
    dict(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32),  # whole heads (d_s == d_t == 8)
    dict(num_layers=3, hidden_size=24, num_heads=4, intermediate_size=48),  # dims inside heads (d_s 6 < 8)
    dict(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=16),  # two teacher heads per student head
    dict(num_layers=2, hidden_size=24, num_heads=2, intermediate_size=8),  # 3 teacher heads -> 2 heads of 12
    dict(num_layers=1, hidden_size=8, num_heads=1, intermediate_size=1),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("name", ["etd-rand", "etd-impt"])
def test_extracted_students_are_valid_models(tiny_teacher, name, shape, tmp_path):
    teacher = load_teacher(str(tiny_teacher))
    student, ctx = make(teacher, tmp_path / "run", **shape)
    plan = initialise(name, ctx, {"importance_batches": 2} if name == "etd-impt" else {})
    hidden, heads = shape["hidden_size"], shape["num_heads"]
    assert len(plan["hidden_dims"]) == hidden and plan["hidden_dims"] == sorted(plan["hidden_dims"])
    assert all(sum(map(len, dims)) == hidden for dims in plan["head_dims"])
    assert all(len(n) == shape["intermediate_size"] for n in plan["neurons"])
    assert plan["student_head_dim"] == hidden // heads
    json.dumps(plan)
    student.save_pretrained(tmp_path / "student")
    loaded = AutoModel.from_pretrained(tmp_path / "student")
    assert (loaded.config.hidden_size, loaded.config.num_attention_heads) == (hidden, heads)
    out = loaded(**inputs(teacher.model.config.vocab_size)).last_hidden_state
    assert out.shape == (3, 17, hidden) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in loaded.named_parameters() if "pooler" not in n)


def test_extracted_weights_are_teacher_slices(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    student, ctx = make(teacher, num_layers=2, hidden_size=16, num_heads=4, intermediate_size=24)
    plan = initialise("etd-rand", ctx, {"layers": [2, 4]})
    assert plan["layers"] == [2, 4] and (plan["teacher_head_dim"], plan["student_head_dim"]) == (8, 4)
    h = torch.tensor(plan["hidden_dims"])
    n = torch.tensor(plan["neurons"][1])
    att = torch.tensor([q * 8 + j for q, dims in zip(plan["heads"][0], plan["head_dims"][0], strict=True)
                        for j in dims])
    t_layers, s_layers = teacher.parts.layers, student.bert.encoder.layer
    assert torch.equal(s_layers[1].intermediate.dense.weight, t_layers[3].intermediate.dense.weight[n][:, h])
    assert torch.equal(s_layers[1].output.dense.weight, t_layers[3].output.dense.weight[h][:, n])
    assert torch.equal(s_layers[0].attention.self.key.weight, t_layers[1].attention.self.key.weight[att][:, h])
    assert torch.equal(s_layers[0].attention.self.query.bias, t_layers[1].attention.self.query.bias[att])
    assert torch.equal(s_layers[0].attention.output.dense.weight, t_layers[1].attention.output.dense.weight[h][:, att])
    assert torch.equal(student.bert.embeddings.position_embeddings.weight,
                       teacher.model.bert.embeddings.position_embeddings.weight[:, h])
    assert student.get_output_embeddings().weight is student.get_input_embeddings().weight
    assert torch.equal(student.cls.predictions.bias, teacher.model.cls.predictions.bias)
    # d_s = 4 < d_t = 8: each student head is half of one teacher head
    assert all(len(dims) == 4 for layer in plan["head_dims"] for dims in layer)


def test_rand_is_seeded(tiny_teacher_bare):
    teacher = load_teacher(str(tiny_teacher_bare))
    shape = dict(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32)
    plans = [initialise("etd-rand", make(teacher, seed=s, **shape)[1]) for s in (0, 0, 1)]
    assert plans[0] == plans[1] and plans[0]["hidden_dims"] != plans[2]["hidden_dims"]
    assert plans[0]["layers"] == [1, 3]


@pytest.mark.parametrize("shape, field", [(dict(hidden_size=64, num_heads=4), "hidden_size"),
                                          (dict(hidden_size=32, num_heads=8), "num_heads"),
                                          (dict(intermediate_size=128), "intermediate_size"),
                                          (dict(num_layers=5), "num_layers")])
def test_larger_student_is_refused(tiny_teacher_mlm, shape, field):
    teacher = load_teacher(str(tiny_teacher_mlm))
    with pytest.raises(BertpressError, match=f"student.{field} .* larger than the teacher"):
        initialise("etd-rand", make(teacher, **shape)[1])


def test_bad_options_are_refused(tiny_teacher_bare):
    teacher = load_teacher(str(tiny_teacher_bare))
    _, ctx = make(teacher, num_layers=2)
    with pytest.raises(BertpressError, match="must list 2 teacher layers"):
        initialise("etd-rand", ctx, {"layers": [1, 9]})
    with pytest.raises(Exception, match="importance"):
        initialise("etd-rand", ctx, {"layers": "importance"})
    ctx.sample_batches = None
    with pytest.raises(BertpressError, match="needs corpus batches"):
        initialise("etd-impt", ctx)


def test_plan_that_does_not_fit_is_refused(tiny_teacher_bare):
    teacher = load_teacher(str(tiny_teacher_bare))
    student, _ = make(teacher, num_layers=1, hidden_size=16, num_heads=2, intermediate_size=8)
    plan = build_plan(teacher.parts, student.config, [1], None, torch.Generator().manual_seed(0))
    extract(teacher.model, student, plan)
    bad = ExtractionPlan(plan.layers, plan.hidden_dims, plan.heads, plan.head_dims, [list(range(9))])
    with pytest.raises(BertpressError, match="slice"):
        extract(teacher.model, student, bad)
    with pytest.raises(BertpressError, match="distinct"):
        extract(teacher.model, student, ExtractionPlan([1], [0] * 16, plan.heads, plan.head_dims, plan.neurons))


def test_impt_caches_and_reuses_scores(tiny_teacher_mlm, tmp_path, monkeypatch):
    teacher = load_teacher(str(tiny_teacher_mlm))
    shape = dict(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32)
    first = initialise("etd-impt", make(teacher, tmp_path, **shape)[1], {"importance_batches": 2})
    assert first["importance"] == {"cache": SCORE_FILE, "reused": False, "batches": 2, "loss": "mlm"}
    stored = json.loads((tmp_path / SCORE_FILE).read_text())
    assert len(stored["scores"]["heads"]) == 4 and len(stored["scores"]["hidden"]) == 32

    def fail(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr("bertpress.init.importance.compute_importance", fail)
    again = initialise("etd-impt", make(teacher, tmp_path, **shape)[1], {"importance_batches": 2})
    assert again["importance"]["reused"] and {k: v for k, v in again.items() if k != "importance"} == {
        k: v for k, v in first.items() if k != "importance"}
    with pytest.raises(AssertionError, match="recomputed"):  # another sample -> another key
        initialise("etd-impt", make(teacher, tmp_path, **shape)[1], {"importance_batches": 3})


@pytest.mark.parametrize(("rule", "layers"), [("skip", [1, 3]), ("uniform", [2, 4]), ("last", [3, 4]),
                                              ("first", [1, 2])])
def test_etd_layer_rules_are_the_mapping_strategies(rule, layers):
    """``init_args.layers`` takes a mapping's name with the mapping's meaning (``uniform`` used to mean skip)."""
    from bertpress.init.etd import choose_layers
    from bertpress.objectives.mapping import resolve_mapping

    assert choose_layers(rule, 4, 2) == layers == resolve_mapping(rule, 2, 4)
