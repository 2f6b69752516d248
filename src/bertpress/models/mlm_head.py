"""Fit a masked-LM head on a frozen teacher that has none, so DistilBERT's soft targets can be computed.

Sentence-embedding teachers (the packaged all-MiniLM-L6-v2) ship without an MLM head. ``teacher.fit_mlm_head``
trains one on the frozen encoder's last layer with the MLM objective on the run's corpus (Devlin et al., 2019:
``L = mean_{masked i} −log softmax(W_e · LN(GELU(W h_i)) + b)[y_i]``), the decoder tied to the input embeddings as in
BERT, so only the head's transform and bias learn. The fitted head is cached (teacher weights, corpus, settings and
seed are its key), like the tokenised corpus, and the teacher becomes an MLM teacher for the whole run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from bertpress.atomic import atomic_dir
from bertpress.data.masking import mask_tokens
from bertpress.errors import BertpressError
from bertpress.models.anatomy import anatomy
from bertpress.models.teacher import Teacher

log = logging.getLogger(__name__)


def _head_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The MLM head's own parameters (the decoder weight is the tied input embedding, which stays frozen)."""
    prefix = f"{model.base_model_prefix}."
    return {n: p for n, p in model.named_parameters() if not n.startswith(prefix)}


def _with_head(teacher: Teacher):
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_config(teacher.model.config)
    missing, unexpected = model.base_model.load_state_dict(teacher.model.state_dict(), strict=False)
    if missing or any(not k.startswith("pooler.") for k in unexpected):
        raise BertpressError(f"cannot put an MLM head on teacher {teacher.source!r} (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}): use a teacher with an MLM head, or drop teacher.fit_mlm_head")
    model.tie_weights()
    model.requires_grad_(False)
    return model


def fit_key(teacher: Teacher, corpus_key: str, settings: dict[str, Any]) -> str:
    """Identity of a fitted head: the teacher's weights, the corpus, the settings (steps, batch, lr, masking, seed)."""
    blob = json.dumps({"teacher": teacher.fingerprint(), "corpus": corpus_key, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def fit_mlm_head(teacher: Teacher, blocks: np.ndarray, train_index: np.ndarray, *, corpus_key: str, steps: int,
                 batch_size: int, lr: float, seed: int, mlm_probability: float, cache_dir: Path) -> Teacher:
    """``teacher`` with a fitted MLM head (from the cache when the same fit was done before); the head's held-out
    masked-token accuracy and loss are logged and stored next to it."""
    if teacher.has_mlm_head:
        return teacher
    tok = teacher.tokenizer
    if tok.mask_token_id is None:
        raise BertpressError(f"teacher {teacher.source!r} has no mask token, so no MLM head can be fitted: drop "
                             "teacher.fit_mlm_head")
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "mlm_probability": mlm_probability}
    key = fit_key(teacher, corpus_key, settings)
    folder = Path(cache_dir) / "mlm_head" / key
    model = _with_head(teacher)
    head = _head_parameters(model)
    device = next(teacher.model.parameters()).device
    model.to(device)
    if (folder / "head.safetensors").is_file():
        state = load_file(str(folder / "head.safetensors"))
        with torch.no_grad():
            for n, p in head.items():
                p.copy_(state[n].to(p.device))
        report = json.loads((folder / "fit.json").read_text())
        log.info("MLM head from cache %s (masked-token accuracy %.3f)", folder, report["accuracy"])
    else:
        report = _fit(model, head, tok, blocks, train_index, device, **settings)
        with atomic_dir(folder) as tmp:
            save_file({n: p.detach().cpu().contiguous() for n, p in head.items()}, str(tmp / "head.safetensors"))
            (tmp / "fit.json").write_text(json.dumps({**settings, **report}, indent=1))
        log.info("fitted an MLM head in %d steps: masked-token accuracy %.3f, loss %.3f", steps, report["accuracy"],
                 report["loss"])
    model.eval()
    model.requires_grad_(False)
    return Teacher(model, tok, teacher.source, anatomy(model))


def _fit(model, head: dict[str, torch.nn.Parameter], tok, blocks: np.ndarray, train_index: np.ndarray,
         device: torch.device, *, steps: int, batch_size: int, lr: float, seed: int,
         mlm_probability: float) -> dict[str, float]:
    """Train the head's parameters with AdamW (frozen encoder); returns the first step's loss, the mean loss of the
    last tenth of the steps and the masked-token accuracy on a fresh batch."""
    for p in head.values():
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(list(head.values()), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    special = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)
    model.eval()  # no dropout: the head learns the teacher's deterministic features

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = torch.as_tensor(np.asarray(blocks[np.sort(rng.choice(train_index, size=n, replace=False))]),
                              dtype=torch.long)
        corrupted, labels = mask_tokens(ids, mask_id=tok.mask_token_id, vocab_size=len(tok), special_ids=special,
                                        generator=generator, probability=mlm_probability)
        return corrupted.to(device), (ids != (tok.pad_token_id if tok.pad_token_id is not None else -1)).long().to(
            device), labels.to(device)

    size = min(batch_size, len(train_index))
    losses = []
    for _ in range(steps):
        ids, mask, labels = batch(size)
        logits = model(input_ids=ids, attention_mask=mask).logits  # the frozen encoder records no graph
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():  # accuracy on a fresh batch
        ids, mask, labels = batch(size)
        logits = model(input_ids=ids, attention_mask=mask).logits
        chosen = labels != -100
        accuracy = float((logits.argmax(-1)[chosen] == labels[chosen]).float().mean()) if chosen.any() else 0.0
    tail = losses[-max(1, steps // 10):]
    return {"initial_loss": losses[0], "loss": sum(tail) / len(tail), "accuracy": accuracy}
