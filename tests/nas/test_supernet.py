"""Supernet slices on tiny models: the full slice is the supernet, ranked slices are ETD-Impt extractions, gradients
reach only the slice, extracted students load and match the slice, sampling is seeded by (seed, position)."""

import pytest
import torch
from init.test_etd import inputs, make, sample_batches
from transformers import AutoModel

from bertpress.errors import BertpressError
from bertpress.init import initialise
from bertpress.init.importance import compute_importance
from bertpress.models.teacher import load_teacher
from bertpress.nas.space import Arch, ArchSpace
from bertpress.nas.supernet import Supernet

from tiny_models import tiny_config

#: the tiny teacher: 4 layers, hidden 32, 4 heads of 8, FFN 64
SPACE = ArchSpace(layers=(2, 3, 4), hidden=(16, 24, 32), heads=(2, 3, 4), ffn=(32, 64))


def _hidden(out):
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.hidden_states[-1]


@pytest.fixture
def teacher(tiny_teacher_bare):
    return load_teacher(str(tiny_teacher_bare))


def test_space_lists_valid_shapes_and_refuses_bad_ones():
    assert Arch(4, 32, 4, 64) == SPACE.largest and SPACE.smallest == Arch(2, 16, 2, 32)
    assert all(a.hidden % a.heads == 0 for a in SPACE.archs())
    assert Arch(2, 16, 3, 32) not in SPACE.archs() and len(SPACE.archs()) == 3 * 2 * (2 + 3 + 2)
    with pytest.raises(BertpressError, match="no architecture whose heads"):
        ArchSpace(layers=(2,), hidden=(16,), heads=(3,), ffn=(8,))
    with pytest.raises(BertpressError, match="hidden 48 exceeds the supernet's 32"):
        Supernet(AutoModel.from_config(tiny_config()), ArchSpace(layers=(2,), hidden=(48,), heads=(4,), ffn=(8,)))


def test_full_slice_reproduces_the_supernet(teacher):
    net = Supernet(teacher.model.eval(), SPACE)
    x = inputs(teacher.model.config.vocab_size)
    with torch.no_grad():
        full = _hidden(teacher.model(**x))
        sliced = _hidden(net(SPACE.largest, **x))
    assert torch.allclose(sliced, full, atol=1e-6)


def test_ranked_slices_are_etd_impt_extractions_and_the_full_one_is_the_teacher(teacher):
    batches = list(sample_batches(teacher.tokenizer)(2))
    scores = compute_importance(teacher, batches, seed=0)
    net = Supernet(teacher.model.eval(), SPACE)
    net.rank(scores)
    x = inputs(teacher.model.config.vocab_size)
    with torch.no_grad():
        # the teacher-shaped slice keeps every unit in the teacher's order: it is the teacher, head for head
        full = net.plan(SPACE.largest)
        assert full.hidden_dims == list(range(32)) and full.heads == [list(range(4))] * 4
        assert torch.equal(_hidden(net(SPACE.largest, **x)), _hidden(teacher.model(**x)))
        for arch in (Arch(2, 16, 2, 32), Arch(3, 24, 3, 32), Arch(4, 16, 4, 64)):
            student, ctx = make(teacher, num_layers=arch.layers, hidden_size=arch.hidden, num_heads=arch.heads,
                                intermediate_size=arch.ffn)
            info = initialise("etd-impt", ctx, {"importance_batches": 2, "layers": list(range(1, arch.layers + 1))})
            plan = net.plan(arch)
            assert (plan.hidden_dims, plan.heads, plan.neurons) == (info["hidden_dims"], info["heads"],
                                                                     info["neurons"])
            assert plan.hidden_dims != list(range(arch.hidden))  # importance, not the leading dims
            assert torch.allclose(_hidden(net(arch, **x)), _hidden(student.eval()(**x)), atol=1e-6), arch
    with pytest.raises(BertpressError, match="importance scores of heads have shape"):
        Supernet(teacher.model, ArchSpace(layers=(2,), hidden=(16,), heads=(2,), ffn=(32,))).rank(
            type(scores)(scores.heads[:2], scores.head_dims, scores.neurons, scores.hidden, scores.layers, "x"))


def test_gradients_reach_only_the_slice(teacher):
    net = Supernet(teacher.model.train().requires_grad_(True), SPACE)  # (a loaded teacher is frozen)
    arch = Arch(2, 16, 2, 32)
    teacher.model.zero_grad(set_to_none=True)
    _hidden(net(arch, **inputs(teacher.model.config.vocab_size))).pow(2).mean().backward()
    layer0, layer3 = teacher.model.encoder.layer[0], teacher.model.encoder.layer[3]
    q = layer0.attention.self.query.weight.grad  # 2 heads x 8 dims of 16 hidden inputs
    assert q[:16, :16].abs().sum() > 0 and q[16:].abs().sum() == 0 and q[:, 16:].abs().sum() == 0
    ffn = layer0.intermediate.dense.weight.grad
    assert ffn[:32, :16].abs().sum() > 0 and ffn[32:].abs().sum() == 0
    assert all(p.grad is None for p in layer3.parameters())  # layers 3-4 are not in a 2-layer slice
    word = teacher.model.embeddings.word_embeddings.weight.grad
    assert word[:, 16:].abs().sum() == 0


def test_extracted_student_loads_and_matches_the_slice(teacher, tmp_path):
    net = Supernet(teacher.model.eval(), SPACE, depth="skip")
    arch = Arch(2, 24, 3, 32)
    assert net.layers(arch) == [1, 3]
    student = net.extract(arch).eval()
    student.save_pretrained(tmp_path / "s")
    loaded = AutoModel.from_pretrained(tmp_path / "s").eval()
    assert (loaded.config.num_hidden_layers, loaded.config.hidden_size, loaded.config.num_attention_heads,
            loaded.config.intermediate_size) == (2, 24, 3, 32)
    x = inputs(teacher.model.config.vocab_size)
    with torch.no_grad():
        assert torch.allclose(_hidden(loaded(**x)), _hidden(net(arch, **x)), atol=1e-5)
    # shells hold no weights of their own
    assert all(p.device.type == "meta" for p in net.shell(arch).parameters())


def test_mlm_supernet_slices_keep_the_tied_head(tiny_teacher_mlm):
    teacher = load_teacher(str(tiny_teacher_mlm))
    net = Supernet(teacher.model.eval(), SPACE)
    x = inputs(teacher.model.config.vocab_size)
    arch = Arch(3, 24, 3, 64)
    with torch.no_grad():
        logits = net(arch, **x).logits
        assert torch.allclose(logits, net.extract(arch).eval()(**x).logits, atol=1e-5)
        assert torch.allclose(net(SPACE.largest, **x).logits, teacher.model(**x).logits, atol=1e-5)
    # the encoder alone (no MLM head) runs as a submodule of the shell
    shell = net.shell(arch)
    base = net(arch, module=shell.base_model, **x).last_hidden_state
    assert base.shape == (3, 17, 24)


def test_sampling_is_seeded_by_seed_and_position():
    a = [SPACE.sample(7, p) for p in range(20)]
    assert a == [SPACE.sample(7, p) for p in range(20)]
    assert all(s[0] == SPACE.largest and s[1] == SPACE.smallest and len(s) == 4 for s in a)
    assert len({tuple(s[2:]) for s in a}) > 10  # the random members vary with the position
    assert SPACE.sample(8, 3) != SPACE.sample(7, 3) or SPACE.sample(8, 4) != SPACE.sample(7, 4)
    one = [SPACE.sample(7, p, rule="random") for p in range(50)]
    assert all(len(s) == 1 for s in one) and len({s[0] for s in one}) > 10
    with pytest.raises(BertpressError, match="unknown supernet sampling"):
        SPACE.sample(0, 0, rule="greedy")


def test_unknown_depth_rule_is_refused(teacher):
    with pytest.raises(BertpressError, match="supernet depth 'middle'"):
        Supernet(teacher.model, SPACE, depth="middle")
