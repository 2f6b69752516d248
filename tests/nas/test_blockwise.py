"""Block-wise supernet training (NAS-BERT) on a tiny teacher (dropout 0.1): each block reads the teacher's
previous-block output on the sub-network's hidden dims, no gradient path crosses a block boundary, the teacher-shaped
sub-network starts at zero block loss, and a block-wise run trains its sub-networks."""

import pytest
import torch
from init.test_etd import sample_batches
from nas.test_supernet_training import recipe

from bertpress.errors import BertpressError
from bertpress.init.importance import compute_importance
from bertpress.models.features import FeatureTap, teacher_forward
from bertpress.nas.space import Arch
from bertpress.nas.training import SupernetModule
from bertpress.recipe import recipe_from_dict
from bertpress.train.build import build_run
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill


@pytest.fixture
def blockwise(tmp_path, tiny_teacher_bare, tiny_corpus):
    run = build_run(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet={"blocks": 2}))
    assert run.teacher.model.config.hidden_dropout_prob == 0.1
    run.student.load_state_dict(run.teacher.model.state_dict())  # the supernet starts as the teacher
    run.supernet.rank(compute_importance(run.teacher, list(sample_batches(run.teacher.tokenizer)(2)), seed=0))
    module = SupernetModule(run.supernet, [s.objective for s in run.stages], seed=5)
    ids = torch.randint(5, 60, (4, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "position": 0}
    tap = FeatureTap(run.teacher.parts, run.stages[0].objective.requests()[0], truncate=True)
    return run, module, batch, teacher_forward(tap, input_ids=ids, attention_mask=mask)


def _inputs(store, key):
    def pre(_module, args, kwargs):
        store[key] = args[0] if args else kwargs["hidden_states"]

    return pre


def _outputs(store, key):
    def post(_module, _args, out):
        store[key] = out[0] if isinstance(out, tuple) else out

    return post


def test_each_block_reads_the_teachers_previous_block_output(blockwise):
    run, module, batch, teacher = blockwise
    arch = Arch(2, 16, 2, 32)  # one layer per block: supernet layers 1 and 3 of 4
    assert run.supernet.layers(arch) == [1, 3] and run.supernet.block_groups(Arch(3, 16, 2, 32)) == [[1, 2], [3]]
    module.train()
    module.block_losses(arch, batch, teacher)  # builds the block tap and its hooks first
    layers = run.supernet.shell(arch).encoder.layer
    seen = {}
    handles = [layers[1].register_forward_pre_hook(_inputs(seen, "in"), with_kwargs=True),
               layers[0].register_forward_hook(_outputs(seen, "out0")),
               layers[1].register_forward_hook(_outputs(seen, "out1"))]
    dims = torch.as_tensor(run.supernet.plan(arch).hidden_dims)
    assert dims.tolist() != list(range(16))  # ranked: not the leading dims
    loss = module.block_losses(arch, batch, teacher)
    assert torch.equal(seen["in"], teacher.hidden[2][..., dims])  # block 2 <- the teacher's layer-2 output
    assert seen["out0"].grad_fn is not None and loss.requires_grad
    # no gradient path from block 2's output back into block 1
    assert torch.autograd.grad(seen["out1"].sum(), seen["out0"], allow_unused=True)[0] is None
    # and perturbing block 1 leaves block 2's output as it was (dropout off to compare)
    module.eval()
    module.block_losses(arch, batch, teacher)
    before = {k: v.detach().clone() for k, v in seen.items()}
    with torch.no_grad():
        run.student.encoder.layer[0].output.dense.weight.add_(1.0)
    module.block_losses(arch, batch, teacher)
    assert not torch.equal(seen["out0"], before["out0"]) and torch.equal(seen["out1"], before["out1"])
    for h in handles:
        h.remove()


def test_the_teacher_shaped_sub_network_starts_at_zero_block_loss(blockwise):
    run, module, batch, teacher = blockwise
    module.eval()  # dropout off: the largest sub-network is the teacher
    assert float(module.block_losses(run.supernet.space.largest, batch, teacher)) < 1e-10
    assert float(module.block_losses(run.supernet.space.smallest, batch, teacher)) > 1e-3


def test_blockwise_run_trains_its_sub_networks(tmp_path, tiny_teacher_bare, tiny_corpus):
    result = distill(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet={"blocks": 2},
                            train={"eval_every": 30}))
    train = read_metrics(result.output_dir / "metrics.jsonl", "train")
    valid = read_metrics(result.output_dir / "metrics.jsonl", "valid")
    assert train[-1]["loss"] < 0.9 * train[0]["loss"] and train[-1]["loss_smallest"] < train[0]["loss_smallest"], train
    # validation scores end to end with the recipe's objective (MiniLM relations): the teacher-shaped
    # sub-network of the fresh supernet is the teacher
    assert [v["step"] for v in valid] == [0, 30] and valid[0]["loss_largest"] < 1e-6 < valid[0]["loss_smallest"]


def test_bad_blockwise_recipes_are_refused(tmp_path, tiny_teacher_bare, tiny_corpus):
    with pytest.raises(BertpressError, match="supernet.blocks: block-wise training feeds every block"):
        recipe_from_dict(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet={"blocks": 2, "inplace": True}))
    with pytest.raises(BertpressError, match=r"supernet.blocks 3: needs a supernet depth \(4\) it divides"):
        build_run(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet={"blocks": 3}))
    with pytest.raises(BertpressError, match="sub-networks of at least 4 layers"):
        build_run(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet={"blocks": 4}))
