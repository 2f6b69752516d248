"""The objectives wire losses to layers correctly, for equal and different shapes."""

import pytest
import torch

from bertpress.errors import BertpressError
from bertpress.init import InitContext, initialise
from bertpress.models.features import FeatureTap, teacher_forward
from bertpress.models.student import StudentShape, build_student, student_config
from bertpress.models.teacher import load_teacher
from bertpress.objectives import ObjectiveContext, build_objective
from bertpress.objectives.matches import Feature, extract


def _setup(teacher_dir, name, options=None, mapping=(2, 4), **shape):
    teacher = load_teacher(str(teacher_dir))
    cfg = student_config(teacher.model.config, StudentShape(num_layers=2, **shape))
    student = build_student(cfg, mlm_head=teacher.has_mlm_head)
    ctx = ObjectiveContext(teacher.model.config, cfg, list(mapping), teacher.has_mlm_head, teacher.has_mlm_head)
    return teacher, student, build_objective(name, options, ctx)


def _features(teacher, student, objective, ids):
    t_req, s_req = objective.requests()
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    t = teacher_forward(FeatureTap(teacher.parts, t_req, truncate=True), **batch)
    from bertpress.models.anatomy import anatomy

    s = FeatureTap(anatomy(student), s_req)(**batch)
    return s, t, batch


def test_tinybert_zero_for_student_copied_along_the_mapping(tiny_teacher_bare):
    """Student layers copied from teacher layers 1 and 2, mapped to 1 and 2: every term is 0; another mapping is not."""
    teacher, student, obj = _setup(tiny_teacher_bare, "tinybert", mapping=(1, 2))
    initialise("select", InitContext(teacher, student.eval(), seed=0), {"layers": [1, 2]})
    s, t, batch = _features(teacher, student, obj, torch.randint(5, 100, (2, 10)))
    loss, terms = obj(s, t, batch)
    assert set(terms) == {"embedding", "hidden", "attention"} and t.hidden.keys() == {0, 1, 2}
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    _, _, other = _setup(tiny_teacher_bare, "tinybert", mapping=(2, 4))
    s, t, batch = _features(teacher, student, other, torch.randint(5, 100, (2, 10)))
    assert other(s, t, batch)[1]["hidden"].item() > 1e-5


def test_tinybert_projection_when_narrower(tiny_teacher_bare):
    teacher, student, obj = _setup(tiny_teacher_bare, "tinybert", hidden_size=16, num_heads=2)
    assert obj.describe()["projection"] is True and obj.describe()["matches"][-1]["heads"] == 4
    s, t, batch = _features(teacher, student, obj, torch.randint(5, 100, (2, 10)))
    loss, _ = obj(s, t, batch)
    loss.backward()
    assert obj.proj.weight.grad is not None and torch.isfinite(loss)


def test_minilm_relation_heads_differ_from_head_counts(tiny_teacher_bare):
    teacher, student, obj = _setup(tiny_teacher_bare, "minilm", {"query": 1.0, "key": 1.0}, num_heads=2)
    assert {m.heads for m in obj.matches} == {4}  # teacher 4 heads, student 2 heads: 4 relation heads divide both widths
    t_req, s_req = obj.requests()
    assert t_req.query == {4} and s_req.value == {2}
    s, t, batch = _features(teacher, student, obj, torch.randint(5, 100, (2, 10)))
    _, terms = obj(s, t, batch)
    assert set(terms) == {"attention", "value", "query", "key"}
    assert all(v.item() > 0 for v in terms.values())


def test_distilbert_needs_heads(tiny_teacher_bare, tiny_teacher_mlm):
    _, _, obj = _setup(tiny_teacher_bare, "distilbert")
    assert set(obj.weights) == {"cos"} and not obj.needs_masking
    with pytest.raises(BertpressError, match="alpha_ce needs a masked-LM head"):
        _setup(tiny_teacher_bare, "distilbert", {"alpha_ce": 1.0})
    _, _, obj = _setup(tiny_teacher_mlm, "distilbert")
    assert set(obj.weights) == {"ce", "mlm", "cos"} and obj.needs_masking
    assert obj.requests()[0].logits


def test_all_zero_weights_refused(tiny_teacher_bare):
    with pytest.raises(BertpressError, match="every weight at 0"):
        _setup(tiny_teacher_bare, "tinybert", {"embedding": 0, "hidden": 0, "attention": 0})


def test_tinybert_attention_on_probabilities_matches_hf_attentions(tiny_teacher_bare):
    """With attention_on=probabilities the captured Q/K give exactly HF's eager ``attentions``."""
    from transformers import AutoModel

    teacher, _, obj = _setup(tiny_teacher_bare, "tinybert", {"attention_on": "probabilities"})
    ids = torch.randint(5, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    t = teacher_forward(FeatureTap(teacher.parts, obj.requests()[0], truncate=True), input_ids=ids, attention_mask=mask)
    eager = AutoModel.from_pretrained(tiny_teacher_bare, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = eager(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    got = extract(t, Feature("attention_probs", 4), 4, mask, {})
    torch.testing.assert_close(got[0], ref[3][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(got[1, :, :6, :6], ref[3][1, :, :6, :6], atol=1e-6, rtol=0)


@pytest.mark.parametrize("hidden_loss", ["cosine", "layer_norm_mse"])
def test_tinybert_hidden_loss_is_scale_free_when_asked(tiny_teacher_bare, hidden_loss):
    """hidden_loss replaces the MSE of the embedding and hidden matches (by hand: the loss function on the mapped
    states), leaves the attention term alone, and ignores a rescaling of the student's states that MSE punishes."""
    from bertpress.objectives.losses import LOSSES

    teacher, student, obj = _setup(tiny_teacher_bare, "tinybert", {"hidden_loss": hidden_loss}, mapping=(2, 4))
    _, _, mse = _setup(tiny_teacher_bare, "tinybert", mapping=(2, 4))
    s, t, batch = _features(teacher, student, obj, torch.randint(5, 100, (2, 10)))
    _, terms = obj(s, t, batch)
    fn, mask = LOSSES.get(hidden_loss).fn, batch["attention_mask"]
    assert terms["hidden"].item() == pytest.approx((fn(s.hidden[1], t.hidden[2], mask)
                                                    + fn(s.hidden[2], t.hidden[4], mask)).item(), rel=1e-5)
    assert terms["embedding"].item() == pytest.approx(fn(s.hidden[0], t.hidden[0], mask).item(), rel=1e-5)
    assert terms["attention"].item() == pytest.approx(mse(s, t, batch)[1]["attention"].item(), rel=1e-6)
    # the student's states scaled by 0.5: the scale-free term barely moves, MSE's changes
    half = s.apply(lambda x: x)
    half.hidden = {k: 0.5 * v for k, v in s.hidden.items()}
    assert obj(half, t, batch)[1]["hidden"].item() == pytest.approx(terms["hidden"].item(), rel=0.02)
    assert abs(mse(half, t, batch)[1]["hidden"].item() - mse(s, t, batch)[1]["hidden"].item()) > 0.05


def test_batch_similarity_match_needs_no_projection_across_widths(tiny_teacher_bare):
    """A batch_similarity_mse match between a narrower student's top layer and the teacher's: no projection is
    created, the term is the loss of the two states (pool from options), and it trains the student."""
    from bertpress.objectives.losses import batch_similarity_mse

    matches = [{"student": "hidden:2", "teacher": "hidden:4", "loss": "batch_similarity_mse", "term": "relation",
                "projection": False, "options": {"pool": "mean"}, "weight": 3.0}]
    teacher, student, obj = _setup(tiny_teacher_bare, "matches", {"matches": matches}, hidden_size=16, num_heads=2,
                                   intermediate_size=32)
    assert student.config.hidden_size != teacher.model.config.hidden_size
    assert isinstance(obj.proj, torch.nn.Identity) and not obj.describe()["projection"]
    s, t, batch = _features(teacher, student, obj, torch.randint(5, 100, (4, 10)))
    loss, terms = obj(s, t, batch)
    want = batch_similarity_mse(s.hidden[2], t.hidden[4], batch["attention_mask"], pool="mean")
    assert terms["relation"].item() == pytest.approx(want.item(), rel=1e-6) and want.item() > 1e-4
    assert loss.item() == pytest.approx(3.0 * want.item(), rel=1e-6)
    loss.backward()
    assert student.encoder.layer[1].output.dense.weight.grad.abs().sum() > 0
