"""Each loss against a value computed by hand (or by an independent loop) on small tensors."""

import math

import pytest
import torch

from bertpress.objectives.losses import (
    attention_score_mse,
    batch_similarity_mse,
    cosine_loss,
    hidden_mean_mse,
    hidden_mse,
    hidden_variance_l1,
    layer_norm_mse,
    mlm_cross_entropy,
    pooled_mse,
    relation_kl,
    relation_logits,
    soft_cross_entropy,
)


def test_soft_cross_entropy_by_hand():
    s = torch.tensor([[[1.0, 0.0]]])
    t = torch.tensor([[[0.0, 0.0]]])
    # T=1: teacher uniform -> -0.5*log(e/(1+e)) - 0.5*log(1/(1+e))
    expected = -0.5 * math.log(math.e / (1 + math.e)) - 0.5 * math.log(1 / (1 + math.e))
    assert soft_cross_entropy(s, t, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # T=2 scales logits by 1/2 and the loss by 4
    expected2 = 4 * (-0.5 * math.log(math.exp(0.5) / (1 + math.exp(0.5))) - 0.5 * math.log(1 / (1 + math.exp(0.5))))
    assert soft_cross_entropy(s, t, 2.0).item() == pytest.approx(expected2, rel=1e-6)


def test_soft_cross_entropy_ignores_padding():
    s = torch.tensor([[[1.0, 0.0], [50.0, -50.0]]])
    t = torch.tensor([[[0.0, 0.0], [-50.0, 50.0]]])
    masked = soft_cross_entropy(s, t, 1.0, mask=torch.tensor([[1, 0]]))
    assert masked.item() == pytest.approx(soft_cross_entropy(s[:, :1], t[:, :1], 1.0).item(), rel=1e-6)


def test_mlm_cross_entropy_only_on_labelled_tokens():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, -100]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert mlm_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_cosine_loss_by_hand():
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [3.0, 3.0]]])
    t = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]])
    # token losses: 1 - 0 = 1; 1 - 1 = 0; padded
    assert cosine_loss(s, t, torch.tensor([[1, 1, 0]])).item() == pytest.approx(0.5, abs=1e-6)


def test_hidden_mse_by_hand():
    s = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[5.0, 5.0], [9.0, 9.0]]])
    t = torch.zeros_like(s)
    mask = torch.tensor([[1, 1], [1, 0]])
    # real tokens: (1+4)/2, 0, (25+25)/2 -> squared errors 1,4,0,0,25,25 over 6 elements
    assert hidden_mse(s, t, mask).item() == pytest.approx(55 / 6, rel=1e-6)
    assert hidden_mse(s, t).item() == pytest.approx((55 + 162) / 8, rel=1e-6)


def test_relation_logits_equal_attention_scores_per_head():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    got = relation_logits(q, k, num_heads=2)
    for h in range(2):
        qh, kh = q[..., h * 4:(h + 1) * 4], k[..., h * 4:(h + 1) * 4]
        torch.testing.assert_close(got[:, h], qh @ kh.transpose(1, 2) / 2.0)


def test_attention_score_mse_over_real_pairs():
    s = torch.zeros(1, 1, 2, 2)
    t = torch.tensor([[[[1.0, 100.0], [100.0, 100.0]]]])
    assert attention_score_mse(s, t, torch.tensor([[1, 0]])).item() == pytest.approx(1.0)
    assert attention_score_mse(s, t).item() == pytest.approx((1 + 3 * 100**2) / 4)


def test_attention_score_mse_without_padding_takes_the_fused_path_with_the_same_value_and_gradient():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5, 5, requires_grad=True), torch.randn(2, 3, 5, 5)
    fused = attention_score_mse(s, t, torch.ones(2, 5, dtype=torch.long))  # packed blocks: nothing padded
    (g_fused,) = torch.autograd.grad(fused, s)
    by_hand = ((s - t) ** 2).sum() / s.numel()
    (g_hand,) = torch.autograd.grad(by_hand, s)
    assert fused.item() == pytest.approx(by_hand.item(), rel=1e-6)
    torch.testing.assert_close(g_fused, g_hand)


def test_relation_kl_matches_explicit_loop():
    torch.manual_seed(1)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    total, count = 0.0, 0
    for b in range(2):
        n = int(mask[b].sum())
        for h in range(3):
            for i in range(n):
                p_t = torch.softmax(t[b, h, i, :n], -1)
                p_s = torch.softmax(s[b, h, i, :n], -1)
                total += float((p_t * (p_t.log() - p_s.log())).sum())
                count += 1
    assert relation_kl(s, t, mask).item() == pytest.approx(total / count, rel=1e-5)
    assert relation_kl(t, t, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_layer_norm_mse_by_hand():
    # token 1: student [1, 3] -> LN [-1, 1]; teacher [0, 10] -> [-1, 1]: 0. token 2: student [2, 0] -> [1, -1],
    # teacher [0, 1] -> [-1, 1]: squared errors 4 and 4 -> mean over 2 tokens x 2 features = (0 + 0 + 4 + 4) / 4 = 2
    s = torch.tensor([[[1.0, 3.0], [2.0, 0.0]]])
    t = torch.tensor([[[0.0, 10.0], [0.0, 1.0]]])
    assert layer_norm_mse(s, t).item() == pytest.approx(2.0, rel=1e-6)
    assert layer_norm_mse(s, t, mask=torch.tensor([[1, 0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert layer_norm_mse(3 * s + 1, s).item() == pytest.approx(0.0, abs=1e-6), "invariant to scale and shift"


def test_mean_mse_and_variance_l1_by_hand():
    s = torch.tensor([[[1.0, 3.0], [2.0, 2.0]]])  # means 2, 2; variances 1, 0
    t = torch.tensor([[[0.0, 0.0], [5.0, 1.0]]])  # means 0, 3; variances 0, 4
    assert hidden_mean_mse(s, t).item() == pytest.approx((4 + 1) / 2)
    assert hidden_variance_l1(s, t).item() == pytest.approx((1 + 4) / 2)
    mask = torch.tensor([[0, 1]])
    assert (hidden_mean_mse(s, t, mask=mask).item(), hidden_variance_l1(s, t, mask=mask).item()) == (1.0, 4.0)


def test_batch_similarity_mse_by_hand():
    # [CLS] of input 0 / 1: student [1, 0] / [0, 1] (cosines: identity); teacher [1, 0, 0] / [2, 0, 0] (all ones):
    # the two off-diagonal cells differ by 1 -> mean over 4 cells = 0.5. Widths may differ (no projection needed).
    s = torch.tensor([[[1.0, 0.0], [5.0, 5.0]], [[0.0, 1.0], [5.0, 5.0]]])
    t = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 9.0]], [[2.0, 0.0, 0.0], [0.0, 0.0, 9.0]]])
    assert batch_similarity_mse(s, t).item() == pytest.approx(0.5, rel=1e-6)
    assert batch_similarity_mse(3 * s, 0.5 * t).item() == pytest.approx(0.5, rel=1e-6), "invariant to scale"
    # mean pooling over real tokens only: the second token is padding, so the pooled vectors are the [CLS] ones
    mask = torch.tensor([[1, 0], [1, 0]])
    assert batch_similarity_mse(s, t, mask=mask, pool="mean").item() == pytest.approx(0.5, rel=1e-6)
    # with the second token real, student means [3, 2.5] / [2.5, 3] and teacher means [0.5, 0, 4.5] / [1, 0, 4.5]
    ps, pt = torch.tensor([[3.0, 2.5], [2.5, 3.0]]), torch.tensor([[0.5, 0.0, 4.5], [1.0, 0.0, 4.5]])
    cs = torch.nn.functional.cosine_similarity(ps[0], ps[1], dim=0)
    ct = torch.nn.functional.cosine_similarity(pt[0], pt[1], dim=0)
    want = 2 * (cs - ct).item() ** 2 / 4
    assert batch_similarity_mse(s, t, pool="mean").item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="pool"):
        batch_similarity_mse(s, t, pool="max")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("loss", [attention_score_mse, hidden_mse])
def test_16_bit_mse_without_fp32_copies_equals_the_fp32_mse_of_the_same_values(loss, dtype):
    """Autocast hands the losses 16-bit tensors: the MSE of the fp32 values, with the gradient rounded once."""
    torch.manual_seed(0)
    base = torch.rand(2, 3, 8, 8)
    near = (base + 1e-3 * torch.randn_like(base)).to(dtype)  # a student near its teacher: exact differences
    far = torch.randn_like(base).to(dtype)
    for s_val in (near, far):
        t = base.to(dtype).requires_grad_()
        s = s_val.clone().requires_grad_()
        got = loss(s, t, torch.ones(2, 8, dtype=torch.long))
        got.backward()
        s32, t32 = s_val.float().requires_grad_(), base.to(dtype).float()
        ref = ((s32 - t32) ** 2).mean()
        ref.backward()
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(ref.item(), rel=2e-3 if s_val is far else 1e-5)
        assert s.grad.dtype == dtype
        if s_val is near:
            assert torch.equal(s.grad, s32.grad.to(dtype))  # rounded once, as the cast-back gradient of fp32 copies
        else:
            torch.testing.assert_close(s.grad.float(), s32.grad, rtol=1e-2, atol=1e-6)
        assert torch.equal(t.grad, -s.grad)


def test_hidden_mse_over_real_tokens_in_16_bit_when_padded():
    s = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[5.0, 5.0], [9.0, 9.0]]], dtype=torch.bfloat16)
    assert hidden_mse(s, torch.zeros_like(s), torch.tensor([[1, 1], [1, 0]])).item() == pytest.approx(55 / 6, rel=1e-6)


def test_pooled_mse_by_hand():
    # student [CLS] [1, 2] / [0, 0]; teacher tokens [[1, 1], [3, 5], pad] / [[2, 2], pad, pad]: means over real
    # tokens [2, 3] / [2, 2] -> squared differences 1, 1, 4, 4 -> mean 2.5
    s = torch.tensor([[[1.0, 2.0], [9.0, 9.0], [9.0, 9.0]], [[0.0, 0.0], [9.0, 9.0], [9.0, 9.0]]])
    t = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [7.0, 7.0]], [[2.0, 2.0], [7.0, 7.0], [7.0, 7.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert pooled_mse(s, t, mask=mask).item() == pytest.approx(2.5)
    # both [CLS]: [1, 2] - [1, 1] and [0, 0] - [2, 2] -> 0, 1, 4, 4 -> 2.25
    assert pooled_mse(s, t, mask=mask, teacher_pool="cls").item() == pytest.approx(2.25)
    with pytest.raises(ValueError, match="student_pool"):
        pooled_mse(s, t, student_pool="max")
