import pytest
import torch
from test_etd import make, sample_batches

from bertpress.data.masking import mask_tokens
from bertpress.init import initialise
from bertpress.init.importance import _capturing, _loss, compute_importance
from bertpress.models.teacher import load_teacher

INERT_HEADS = (1, 3)  # of 0-based layer 1
INERT_NEURONS = (0, 7, 30, 31, 63)  # of 0-based layer 2
INERT_DIMS = (5, 17)  # of the residual stream


def make_inert(teacher) -> None:
    """Zero the output weights of some heads and neurons and the LayerNorm gains of some hidden dims."""
    layers = teacher.parts.layers
    with torch.no_grad():
        for h in INERT_HEADS:
            layers[1].attention.output.dense.weight[:, h * 8:(h + 1) * 8] = 0
        layers[2].output.dense.weight[:, list(INERT_NEURONS)] = 0
        norms = [teacher.parts.embeddings.LayerNorm] + [m for layer in layers
                                                        for m in (layer.attention.output.LayerNorm, layer.output.LayerNorm)]
        for norm in norms:
            norm.weight[list(INERT_DIMS)] = 0
            norm.bias[list(INERT_DIMS)] = 0


def test_inert_units_score_zero_and_rank_last(tiny_teacher):
    teacher = load_teacher(str(tiny_teacher))
    make_inert(teacher)
    scores = compute_importance(teacher, list(sample_batches(teacher.tokenizer)(3)), seed=0)
    assert scores.loss == ("mlm" if teacher.has_mlm_head else "representation")
    for values, inert in ((scores.heads[1], INERT_HEADS), (scores.neurons[2], INERT_NEURONS),
                          (scores.hidden, INERT_DIMS)):
        live = [i for i in range(len(values)) if i not in inert]
        assert values[list(inert)].max() == 0 and values[live].min() > 0
    assert scores.head_dims[1].view(4, 8)[list(INERT_HEADS)].max() == 0
    assert scores.heads[0].min() > 0 and scores.neurons[1].min() > 0

    _, ctx = make(teacher, num_layers=4, hidden_size=16, num_heads=2, intermediate_size=59)
    plan = initialise("etd-impt", ctx, {"importance_batches": 3})
    assert plan["heads"][1] == [0, 2]
    assert plan["neurons"][2] == [n for n in range(64) if n not in INERT_NEURONS]
    assert not set(INERT_DIMS) & set(plan["hidden_dims"])


def test_skippable_layer_is_dropped_by_layer_importance(tiny_teacher_bare):
    teacher = load_teacher(str(tiny_teacher_bare))
    with torch.no_grad():  # layer 3 adds nothing to the stream; its LayerNorms (gain 1, bias 0) keep it unchanged
        block = teacher.parts.layers[2]
        for dense in (block.attention.output.dense, block.output.dense):
            dense.weight.zero_()
            dense.bias.zero_()
    _, ctx = make(teacher, num_layers=3)
    plan = initialise("etd-impt", ctx, {"layers": "importance", "importance_batches": 2})
    assert plan["layers"] == [1, 2, 4]


def test_head_score_is_the_head_mask_gradient(tiny_teacher_bare):
    """Michel et al.'s score for one example equals |dL/dxi| measured by finite differences."""
    teacher = load_teacher(str(tiny_teacher_bare))
    teacher.model.double()
    batch = {k: v[:1] for k, v in next(sample_batches(teacher.tokenizer)(1)).items()}
    scores = compute_importance(teacher, [batch], seed=3)
    special = torch.tensor(sorted(set(teacher.tokenizer.all_special_ids)))
    corrupted, labels = mask_tokens(batch["input_ids"], mask_id=teacher.tokenizer.mask_token_id,
                                    vocab_size=teacher.model.config.vocab_size, special_ids=special,
                                    generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        target = teacher.model(**batch).last_hidden_state
    layer, head, eps = 2, 1, 1e-3

    def loss_with(xi: float) -> float:
        def scale(_m, _a, out):
            o = out[0].clone()
            o[..., head * 8:(head + 1) * 8] *= xi
            return (o, *out[1:])

        handle = teacher.parts.layers[layer].attention.self.register_forward_hook(scale)
        try:
            with torch.no_grad():
                return _loss(teacher, corrupted, batch["attention_mask"], labels, target).item()
        finally:
            handle.remove()

    numeric = abs(loss_with(1 + eps) - loss_with(1 - eps)) / (2 * eps)
    assert scores.heads[layer, head].item() == pytest.approx(numeric, rel=1e-2)


def test_scores_are_deterministic_and_hooks_removed(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    batches = list(sample_batches(teacher.tokenizer)(2))
    a, b = (compute_importance(teacher, batches, seed=1) for _ in range(2))
    assert all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("heads", "head_dims", "neurons", "hidden", "layers"))
    assert not torch.equal(a.heads, compute_importance(teacher, batches, seed=2).heads)
    with _capturing(teacher.parts):
        pass
    assert not any(m._forward_hooks for m in teacher.model.modules())
