"""``bertpress.models.dropout``: 16-bit masks on CPU, the distribution and gradient of ``F.dropout``."""

import math

import pytest
import torch

from bertpress.models.dropout import LEVELS, dropout


def test_drops_each_element_with_probability_p_and_keeps_the_mean():
    torch.manual_seed(0)
    n, p = 4_000_003, 0.1  # not a multiple of 4: the last int64 draw is cut
    out = dropout(torch.ones(n), p)
    dropped = (out == 0).float().mean().item()
    q = round(p * LEVELS) / LEVELS
    assert abs(q - p) < 1 / LEVELS
    assert abs(dropped - q) < 5 * math.sqrt(q * (1 - q) / n)  # 5 sigma
    kept = out[out != 0]
    assert torch.all(kept == LEVELS / (LEVELS - round(p * LEVELS)))  # the exact inverse keep probability
    assert out.mean().item() == pytest.approx(1.0, abs=5 * math.sqrt(q / (1 - q) / n))


def test_masks_are_uncorrelated_across_positions_and_calls():
    torch.manual_seed(1)
    a, b = (dropout(torch.ones(1_000_000), 0.5) == 0).float(), (dropout(torch.ones(1_000_000), 0.5) == 0).float()
    for x, y in ((a[:-1], a[1:]), (a[:-4], a[4:]), (a, b)):  # neighbours, the same int16 lane, two calls
        assert abs(torch.corrcoef(torch.stack([x, y]))[0, 1].item()) < 0.01


def test_seeded_like_torch_and_off_in_eval():
    x = torch.randn(3, 7, 11)
    torch.manual_seed(5)
    first = dropout(x, 0.3)
    torch.manual_seed(5)
    assert torch.equal(dropout(x, 0.3), first)
    assert torch.equal(dropout(x, 0.3, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)


def test_gradient_is_the_mask_times_the_scale_in_the_input_dtype():
    torch.manual_seed(2)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(64, 33, dtype=dtype, requires_grad=True)
        out = dropout(x, 0.25)
        out.backward(torch.ones_like(out))
        scale = LEVELS / (LEVELS - round(0.25 * LEVELS))
        expected = (out != 0).to(dtype) * scale
        assert out.dtype == dtype
        assert torch.equal(x.grad, expected)
        assert torch.equal(out, torch.where(out != 0, x.detach() * scale, 0).to(dtype))


def test_a_restored_torch_rng_state_reproduces_the_mask_and_each_call_moves_torchs_stream_once():
    x = torch.randn(64, 129)
    state = torch.get_rng_state()
    first = dropout(x, 0.1)
    after_one = torch.get_rng_state()
    torch.set_rng_state(state)
    torch.randint(-(1 << 63), (1 << 63) - 1, (), dtype=torch.int64)  # what one call draws: the SFC64 seed
    assert torch.equal(torch.get_rng_state(), after_one)
    torch.set_rng_state(state)
    assert torch.equal(dropout(x, 0.1), first)  # a checkpoint's RNG state gives the same masks on resume
    assert not torch.equal(dropout(x, 0.1), first)
