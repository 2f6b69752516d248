"""Attention matrices from the kernel (issue 14): the layers an objective reads hand over the scores/probabilities
they computed their output from, other layers stay on SDPA, and the result equals HF's eager attention."""

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForMaskedLM

from bertpress.models.anatomy import anatomy
from bertpress.models.attention import IMPLEMENTATION, SLOT
from bertpress.models.features import FeatureRequest, FeatureTap
from bertpress.objectives.losses import relation_logits
from bertpress.objectives.matches import Feature, _request

from layouts import MODEL_TYPES, save_layout_teacher

#: types whose attention matrices come from the kernel (the rest recompute them from Q and K)
KERNEL = {"bert", "ernie", "roberta", "xlm-roberta", "camembert", "data2vec-text", "electra", "distilbert"}


def _batch():
    torch.manual_seed(3)
    ids = torch.randint(5, 60, (2, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padded keys must get no probability
    return ids, mask


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_kernel_attention_equals_eager_attention(model_type, tmp_path):
    path = save_layout_teacher(tmp_path, model_type)
    model = AutoModelForMaskedLM.from_pretrained(path, attn_implementation="sdpa" if model_type in KERNEL else None)
    model.eval()
    parts = anatomy(model)
    ids, mask = _batch()
    hidden_only = FeatureTap(parts, FeatureRequest(hidden=frozenset({4})))
    with torch.no_grad():
        plain = hidden_only(input_ids=ids, attention_mask=mask).hidden[4]
    hidden_only.close()
    tap = FeatureTap(parts, FeatureRequest(probs=frozenset({1, 3}), scores=frozenset({3}), query=frozenset({3}),
                                           key=frozenset({3}), hidden=frozenset({4})), kernel=True)
    assert tap.kernel == (model_type in KERNEL)
    with torch.no_grad():
        feats = tap(input_ids=ids, attention_mask=mask)
    tap.close()
    # the captured layers compute what SDPA computed: the model's output does not change
    torch.testing.assert_close(feats.hidden[4], plain, atol=1e-5, rtol=1e-5)
    assert set(feats.probs) == {1, 3} and set(feats.scores) == {3}
    heads = parts.num_heads
    if model_type != "modernbert":  # its rotary positions act after the Wqkv projection the recompute reads
        torch.testing.assert_close(feats.scores[3], relation_logits(feats.query[3], feats.key[3], heads),
                                   atol=1e-5, rtol=1e-5)
    assert float(feats.probs[3][1, :, :, 6:].abs().max()) == 0.0
    torch.testing.assert_close(feats.probs[1].sum(-1), torch.ones(2, heads, 10))
    if model_type in KERNEL:  # exactly what HF's eager attention returns
        eager = AutoModelForMaskedLM.from_pretrained(path, attn_implementation="eager").eval()
        with torch.no_grad():
            ref = eager.base_model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
        for layer in (1, 3):
            torch.testing.assert_close(feats.probs[layer], ref[layer - 1], atol=1e-6, rtol=1e-5)


def test_captured_probs_are_before_dropout_and_carry_gradients(tiny_teacher_bare):
    """Train mode (dropout 0.1 on, as in the real model): the handed-over probabilities are the masked softmax of
    this forward's Q and K (dropout applies only to what multiplies V), and a loss on them reaches the query."""
    model = AutoModel.from_pretrained(tiny_teacher_bare, attn_implementation="sdpa").train()
    assert model.config.attention_probs_dropout_prob == 0.1
    parts = anatomy(model)
    ids, mask = _batch()
    tap = FeatureTap(parts, FeatureRequest(probs=frozenset({2}), query=frozenset({2}), key=frozenset({2})),
                     kernel=True)
    feats = tap(input_ids=ids, attention_mask=mask)
    expect = relation_logits(feats.query[2], feats.key[2], parts.num_heads)
    expect = expect.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(expect.dtype).min).softmax(-1)
    torch.testing.assert_close(feats.probs[2], expect, atol=1e-6, rtol=1e-5)
    feats.probs[2].pow(2).sum().backward()
    query = parts.attention_projections(1)[0].module
    assert query.weight.grad is not None and float(query.weight.grad.abs().sum()) > 0
    tap.close()


def test_taps_share_a_model_and_close_cleanly(tiny_teacher_bare, tmp_path):
    model = AutoModel.from_pretrained(tiny_teacher_bare, attn_implementation="sdpa").eval()
    parts = anatomy(model)
    ids, mask = _batch()
    first = FeatureTap(parts, FeatureRequest(probs=frozenset({1})), kernel=True)
    second = FeatureTap(parts, FeatureRequest(scores=frozenset({1, 2})), kernel=True)
    assert model.config._attn_implementation == IMPLEMENTATION
    with torch.no_grad():
        a, b = first(input_ids=ids, attention_mask=mask), second(input_ids=ids, attention_mask=mask)
    assert set(a.probs) == {1} and not a.scores and set(b.scores) == {1, 2} and not b.probs
    first.close()
    with torch.no_grad():
        assert set(second(input_ids=ids, attention_mask=mask).scores) == {1, 2}
    model.save_pretrained(tmp_path)  # the capturing implementation is never written into a saved model
    assert IMPLEMENTATION not in (tmp_path / "config.json").read_text()
    assert "_attn_implementation" not in json.loads((tmp_path / "config.json").read_text())
    second.close()
    assert model.config._attn_implementation == "sdpa"
    assert not any(hasattr(m, SLOT) for m in model.modules())


def test_a_teacher_tap_keeps_sdpa_and_recomputes(tiny_teacher_bare):
    """Without ``kernel`` (teacher taps) the model's computation does not change with what is captured: the
    matrices are recomputed from Q and K, and equal the kernel's."""
    model = AutoModel.from_pretrained(tiny_teacher_bare, attn_implementation="sdpa").eval()
    parts = anatomy(model)
    ids, mask = _batch()
    request = FeatureRequest(probs=frozenset({2}), scores=frozenset({1}))
    teacher = FeatureTap(parts, request)
    assert not teacher.kernel and model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        recomputed = teacher(input_ids=ids, attention_mask=mask)
        teacher.close()
        student = FeatureTap(parts, request, kernel=True)
        kernel = student(input_ids=ids, attention_mask=mask)
    student.close()
    torch.testing.assert_close(recomputed.probs[2], kernel.probs[2], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(recomputed.scores[1], kernel.scores[1], atol=1e-6, rtol=1e-5)


def test_only_the_models_own_heads_come_from_the_kernel():
    """attention_probs over the model's head count is captured whole; over another count (MiniLMv2-style relation
    heads) it is computed from Q and K."""
    probs = Feature.parse("attention_probs:2")
    own = _request([(probs, 4)], model_heads=4)
    assert own.probs == {2} and not own.query and not own.key
    other = _request([(probs, 2)], model_heads=4)
    assert not other.probs and other.query == {2} and other.key == {2}
    scores = _request([(Feature.parse("attention_scores:1"), 4), (Feature.parse("relation_vv:1"), 4)], model_heads=4)
    assert scores.scores == {1} and scores.value == {1} and not scores.query
