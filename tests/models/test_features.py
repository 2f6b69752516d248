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
