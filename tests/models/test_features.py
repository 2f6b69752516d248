import torch

from bertpress.models.features import FeatureRequest, FeatureTap, teacher_forward
from bertpress.models.teacher import load_teacher


def test_tap_matches_hf_outputs_and_truncates(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    ids = torch.randint(5, 100, (2, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ref = teacher.model.base_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    calls = []
    teacher.parts.layers[3].register_forward_hook(lambda *a: calls.append(3))
    tap = FeatureTap(teacher.parts, FeatureRequest(hidden=frozenset({0, 2}), query=frozenset({2}),
                                                   key=frozenset({2})), truncate=True)
    feats = teacher_forward(tap, input_ids=ids, attention_mask=mask)
    assert not calls, "layers past the deepest requested one must not run"
    torch.testing.assert_close(feats.hidden[0], ref.hidden_states[0])
    torch.testing.assert_close(feats.hidden[2], ref.hidden_states[2])
    q_proj = teacher.parts.attention_projections(1)[0].module
    torch.testing.assert_close(feats.query[2], q_proj(ref.hidden_states[1]))
    assert not feats.hidden[0].is_inference()
    assert len(teacher.parts.layers) == 4


def test_tap_logits_runs_full_model(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    ids = torch.randint(5, 100, (1, 8))
    tap = FeatureTap(teacher.parts, FeatureRequest(logits=True), truncate=True)
    feats = teacher_forward(tap, input_ids=ids, attention_mask=torch.ones_like(ids))
    with torch.no_grad():
        torch.testing.assert_close(feats.logits, teacher.model(input_ids=ids).logits)


def test_teacher_features_are_the_same_under_no_grad_and_inference_mode_and_usable_by_a_loss(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    ids = torch.randint(5, 100, (2, 12))
    tap = FeatureTap(teacher.parts, FeatureRequest(hidden=frozenset({2}), probs=frozenset({2})), truncate=True)
    plain = teacher_forward(tap, input_ids=ids, attention_mask=torch.ones_like(ids))  # the default: no_grad
    inference = teacher_forward(tap, inference_mode=True, input_ids=ids, attention_mask=torch.ones_like(ids))
    for a, b in ((plain.hidden[2], inference.hidden[2]), (plain.probs[2], inference.probs[2])):
        assert torch.equal(a, b) and not a.requires_grad and not a.is_inference() and not b.is_inference()
    student = plain.probs[2].clone().requires_grad_()
    for feats in (plain, inference):  # a loss that saves the target for its backward accepts either
        torch.nn.functional.mse_loss(student * 2, feats.probs[2]).backward()
    assert student.grad is not None
