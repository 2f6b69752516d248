"""Teacher-student representation agreement on held-out text: do they encode it the same way?"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.inference_mode()
def representation_agreement(teacher: nn.Module, student: nn.Module, input_ids: Tensor, *,
                             batch_size: int = 16) -> dict[str, float]:
    """Mean cosine similarity between teacher and student last hidden states on ``input_ids [n, seq]``.

    ``token_cosine`` averages over tokens; ``sentence_cosine`` compares mean-pooled sequence embeddings (the
    sentence-transformers pooling of the packaged teacher). Both are 1.0 for a student identical to the teacher.
    Models with different widths are not comparable this way (returns NaN).
    """
    teacher_enc = getattr(teacher, "base_model", teacher)
    student_enc = getattr(student, "base_model", student)
    if teacher_enc.config.hidden_size != student_enc.config.hidden_size:
        return {"token_cosine": float("nan"), "sentence_cosine": float("nan")}
    teacher_enc.eval()
    was_training = student_enc.training
    student_enc.eval()
    tok_sum, sent_sum, n_tok, n_seq = 0.0, 0.0, 0, 0
    for start in range(0, len(input_ids), batch_size):
        ids = input_ids[start:start + batch_size]
        mask = torch.ones_like(ids)
        h_t = teacher_enc(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        h_s = student_enc(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        tok_sum += F.cosine_similarity(h_t, h_s, dim=-1).sum().item()
        sent_sum += F.cosine_similarity(h_t.mean(1), h_s.mean(1), dim=-1).sum().item()
        n_tok += ids.numel()
        n_seq += len(ids)
    student_enc.train(was_training)
    return {"token_cosine": tok_sum / n_tok, "sentence_cosine": sent_sum / n_seq}
