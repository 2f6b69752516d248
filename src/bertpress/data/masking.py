"""Dynamic MLM masking (BERT, Devlin et al., 2019): 15% of tokens; of those 80% [MASK], 10% random, 10% kept."""

from __future__ import annotations

import torch
from torch import Tensor


def mask_tokens(input_ids: Tensor, *, mask_id: int, vocab_size: int, special_ids: Tensor,
                generator: torch.Generator, probability: float = 0.15) -> tuple[Tensor, Tensor]:
    """Return ``(masked_ids, labels)``; ``labels`` is −100 where no prediction is made.

    Special tokens (``special_ids``) are never selected. All randomness comes from ``generator`` so a batch's
    masking is a pure function of its seed (exact resume).
    """
    device = input_ids.device
    shape = input_ids.shape
    candidates = ~torch.isin(input_ids, special_ids.to(device))
    draw = torch.rand(shape, generator=generator, device="cpu").to(device)
    selected = candidates & (draw < probability)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(shape, generator=generator, device="cpu").to(device)
    random_ids = torch.randint(vocab_size, shape, generator=generator, device="cpu").to(device)
    masked = input_ids.clone()
    masked[selected & (action < 0.8)] = mask_id
    replace = selected & (action >= 0.8) & (action < 0.9)
    masked[replace] = random_ids[replace]
    return masked, labels


def masking_generator(seed: int, micro_step: int, rank: int = 0) -> torch.Generator:
    """A generator seeded by (run seed, global micro-batch index, process rank)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + micro_step) * 1_009 + rank)
