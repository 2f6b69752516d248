"""Batches for the loop: a deterministic, resumable batch order and the per-batch masking."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from bertpress.data.masking import mask_tokens, masking_generator


class BlockDataset(Dataset):
    """Rows ``blocks[index[i]]`` of a (memory-mapped) packed corpus as int64 tensors."""

    def __init__(self, blocks: np.ndarray, index: np.ndarray) -> None:
        self.blocks, self.index = blocks, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(np.asarray(self.blocks[self.index[i]], dtype=np.int64))


class LabelledDataset(BlockDataset):
    """Rows of padded examples with their labels (``[n]`` per example, or ``[n, block_size]`` per token)."""

    def __init__(self, blocks: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
        super().__init__(blocks, index)
        self.labels = labels

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return super().__getitem__(i), torch.as_tensor(np.asarray(self.labels[self.index[i]]))


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches ``start .. total-1`` of an endless sequence of seeded epoch permutations (last partial batch dropped).

    Batch ``b`` is always the same indices for a given ``(seed, n, batch_size)``, so resuming at batch ``start``
    continues the data order exactly; under DDP accelerate shards consecutive batches across processes.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int) -> None:
        if n < batch_size:
            raise ValueError(f"{n} blocks < batch size {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.per_epoch = n // batch_size

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def _epoch(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for b in range(self.start, self.total):
            e, k = divmod(b, self.per_epoch)
            if e != epoch:
                epoch, perm = e, self._epoch(e)
            yield perm[k * self.batch_size:(k + 1) * self.batch_size].tolist()


class Batcher:
    """Turns block ids into model inputs; masks them (seeded by position) when the objective needs MLM labels.

    ``trim``: padded examples (``data.unit`` sentences/pairs) are cut to the batch's longest one. ``token_types``:
    segment ids for pairs, 0 up to the first separator and 1 after it (padding 0), which is what BERT-family
    tokenizers give ``tokenizer(a, b)``."""

    def __init__(self, tokenizer, *, masking: bool, probability: float, seed: int, trim: bool = False,
                 token_types: bool = False) -> None:
        self.masking, self.probability, self.seed = masking, probability, seed
        self.trim, self.token_types = trim, token_types
        self.sep_id = tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else -1
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def __call__(self, ids: Tensor, position: int, rank: int = 0, labels: Tensor | None = None) -> dict[str, Tensor]:
        mask = (ids != self.pad_id).long()
        if self.trim:
            width = int(mask.sum(1).max())
            ids, mask = ids[:, :width], mask[:, :width]
            if labels is not None and labels.dim() == 2:
                labels = labels[:, :width]
        batch = {"input_ids": ids, "attention_mask": mask}
        if labels is not None:
            batch["labels"] = labels
        if self.token_types:
            sep = (ids == self.sep_id).long()
            batch["token_type_ids"] = ((sep.cumsum(1) - sep) > 0).long() * mask
        if self.masking:
            gen = masking_generator(self.seed, position, rank)
            batch["input_ids"], batch["labels"] = mask_tokens(
                ids, mask_id=self.mask_id, vocab_size=self.vocab_size, special_ids=self.special,
                generator=gen, probability=self.probability)
        return batch

