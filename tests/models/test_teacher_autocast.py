"""``Teacher.for_autocast``: the teacher's Linear weights kept in the autocast dtype give bit-identical features."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bertpress.models.teacher import Teacher, load_teacher

from layouts import MODEL_TYPES, save_layout_teacher


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_autocast_copy_matches_the_teacher_bit_for_bit(tmp_path, model_type):
    teacher = load_teacher(str(save_layout_teacher(tmp_path / model_type, model_type, mlm=True)))
    fast = teacher.for_autocast(torch.bfloat16)
    assert fast is teacher.for_autocast(torch.bfloat16)  # made once
    tied = {id(teacher.model.get_input_embeddings().weight)}
    for orig, copy in zip(_linears(teacher.model), _linears(fast.model), strict=True):
        assert orig.weight.dtype == torch.float32  # the teacher itself is untouched
        if id(orig.weight) in tied:  # an MLM decoder tied to the input embeddings stays the shared fp32 tensor
            assert copy.weight is orig.weight
        else:
            assert copy.weight.dtype == torch.bfloat16 and not copy.weight.requires_grad
            assert torch.equal(copy.weight, orig.weight.to(torch.bfloat16))
    # everything but the Linears is shared, not copied
    assert fast.model.get_input_embeddings().weight is teacher.model.get_input_embeddings().weight
    torch.manual_seed(0)
    ids = torch.randint(5, teacher.model.config.vocab_size, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0

    def run(t: Teacher):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = t.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return [*out.hidden_states, out.logits]

    got, want = run(fast), run(teacher)
    assert len(got) == teacher.model.config.num_hidden_layers + 2 if model_type != "distilbert" else len(got) > 2
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and torch.equal(g, w)
