"""Which parameters each stage trains: those its ``trainable`` parts name that its objective actually reaches.

A part the objective never touches (an unused MLM head, the pooler, another stage's projections) would only decay
under AdamW's weight decay, so it stays fixed. Reach is found by one tiny forward/backward per stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from bertpress.data.corpus import PackedCorpus
from bertpress.models.anatomy import Anatomy
from bertpress.models.features import FeatureTap, model_inputs, teacher_forward
from bertpress.train.data import Batcher
from bertpress.train.stages import Stage, trainable_ids

log = logging.getLogger(__name__)


def fill_stage_parameters(module: nn.Module, stages: Sequence[Stage], datasets: Mapping[str, PackedCorpus],
                          batchers: Mapping[str, Batcher], teacher_parts: Anatomy,
                          fixed: nn.Parameter | None = None) -> list[str]:
    """Fill every stage's ``trains`` with the names (in ``module``, a DistillModule) of the parameters it updates;
    ``fixed`` (the frozen word embeddings) is never trained. The RNG is left as it was. Returns the names no stage
    trains."""
    names = {id(p): n for n, p in module.named_parameters()}
    objectives = list(module.objectives)
    held = set() if fixed is None else {id(fixed)}
    module.train()
    for stage in stages:
        data = datasets[stage.data]
        first = data.train_index[:2]
        ids = torch.tensor(np.asarray(data.blocks[first])[:, :16], dtype=torch.long)
        wanted = trainable_ids(module.parts, [objectives[stage.index]], stage.trainable) - held
        if "all" in stage.trainable:
            wanted |= trainable_ids(module.parts, objectives, ["projections"]) - held
        module.activate(stage.index)
        tap = FeatureTap(teacher_parts, stage.objective.requests()[0], truncate=True)
        batcher = batchers[stage.data]
        batcher.masking = stage.objective.needs_masking
        labels = None if data.labels is None else torch.as_tensor(np.asarray(data.labels[first]))[
            (...,) if data.labels.ndim == 1 else (slice(None), slice(0, 16))]
        batch = batcher(ids, position=0, labels=labels)
        for p in module.parameters():
            p.requires_grad_(id(p) in wanted)
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            loss, _ = module(batch, teacher_forward(tap, **model_inputs(batch)))
            loss.backward()
        tap.close()
        stage.trains = [names[id(p)] for p in module.parameters() if p.grad is not None]
        unreached = sorted(names[i] for i in wanted if names[i] not in set(stage.trains))
        for p in module.parameters():
            p.grad = None
        if unreached:
            log.info("stage %s: not reached by its objective, kept fixed: %d tensors (%s)", stage.name,
                     len(unreached), ", ".join(sorted({n.split(".")[1] if n.count(".") > 1 else n
                                                       for n in unreached})))
    trained = {n for s in stages for n in s.trains}
    frozen = [n for n in names.values() if n not in trained]
    if fixed is not None:
        frozen = [n for n in frozen if names.get(id(fixed)) != n] + ["word_embeddings (freeze_embeddings)"]
    return frozen
