"""Block-wise supernet training in separate processes (``supernet.block``) and ``bertpress merge-blocks``: a block
process computes its own term of the block loss and trains only its block; merged, the block runs equal the
single-process block-wise run (dropout and clipping off); bad merges are refused with one line."""

import json
import shutil

import pytest
import torch
from init.test_etd import sample_batches
from nas.test_supernet_training import recipe
from safetensors.torch import load_file

from bertpress.cli import main
from bertpress.errors import BertpressError
from bertpress.init.importance import compute_importance
from bertpress.models.features import FeatureTap, teacher_forward
from bertpress.nas.space import Arch
from bertpress.nas.training import SupernetModule
from bertpress.recipe import recipe_from_dict
from bertpress.search.arch import load_supernet_run
from bertpress.train.build import build_run
from bertpress.train.merge import merge_blocks
from bertpress.train.run import distill

from tiny_models import save_tiny_teacher


def _grads(module, loss):
    module.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in module.supernet.model.named_parameters() if p.grad is not None}


def test_a_block_process_computes_its_term_and_gradients(tmp_path, tiny_teacher_bare, tiny_corpus):
    run = build_run(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet={"blocks": 2}))
    assert run.teacher.model.config.hidden_dropout_prob == 0.1
    run.student.load_state_dict(run.teacher.model.state_dict())
    run.supernet.rank(compute_importance(run.teacher, list(sample_batches(run.teacher.tokenizer)(2)), seed=0))
    with torch.no_grad():  # move the supernet off the teacher, so every block's term is non-zero
        for p in run.student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    objectives = [s.objective for s in run.stages]
    whole = SupernetModule(run.supernet, objectives, seed=5).eval()  # dropout off, to compare values
    parts = [SupernetModule(run.supernet, objectives, seed=5, block=b).eval() for b in (0, 1)]
    ids = torch.randint(5, 60, (4, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "position": 0}
    tap = FeatureTap(run.teacher.parts, objectives[0].requests()[0], truncate=True)
    teacher = teacher_forward(tap, input_ids=ids, attention_mask=mask)
    arch = Arch(3, 16, 2, 32)  # uneven: supernet layers [1, 2] in block 0, [3] in block 1
    shape, plan = run.supernet.block_part(arch, 1)
    assert shape == Arch(1, 16, 2, 32) and plan.layers == [3] and plan.heads == [run.supernet.plan(arch).heads[2]]
    full = whole.block_losses(arch, batch, teacher)
    terms = [m.block_losses(arch, batch, teacher) for m in parts]
    assert float(terms[0].detach()) > 1e-4 and float(terms[1].detach()) > 1e-4
    assert float((terms[0] + terms[1]).detach()) == pytest.approx(float(full.detach()), rel=1e-6)
    g_full = _grads(whole, whole.block_losses(arch, batch, teacher))
    g0, g1 = (_grads(m, m.block_losses(arch, batch, teacher)) for m in parts)
    layer = "encoder.layer.{}.".format
    assert g1 and all(n.startswith(layer(2)) for n in g1), sorted(g1)  # block 1 runs supernet layer 3 only
    assert any(n.startswith("embeddings.") for n in g0) and not any(n.startswith(layer(2)) for n in g0)
    assert g0.keys() | g1.keys() == g_full.keys() and not g0.keys() & g1.keys()
    for name, g in {**g0, **g1}.items():
        torch.testing.assert_close(g, g_full[name], rtol=1e-5, atol=1e-7, msg=name)


def _block_runs(tmp_path, teacher, corpus, **extra):
    out = {}
    for b in (None, 0, 1):
        name = "single" if b is None else f"block{b}"
        out[name] = distill(recipe(tmp_path, teacher, corpus, name=name,
                                   supernet={"blocks": 2, **({} if b is None else {"block": b})},
                                   train={"eval_every": 30, "save_every": 30, "max_grad_norm": 0.0}, **extra))
    return out


def _state(run_dir):
    return load_file(run_dir / "student" / "model.safetensors")  # as saved (BertForMaskedLM: bert.*, cls.*)


def test_block_processes_merge_into_the_single_process_run(tmp_path, tiny_corpus):
    teacher = save_tiny_teacher(tmp_path / "teacher", mlm=True, hidden_dropout_prob=0.0,
                                attention_probs_dropout_prob=0.0)
    runs = _block_runs(tmp_path, teacher, tiny_corpus)
    initial = load_file(teacher / "model.safetensors")  # the supernet starts as the teacher
    block1 = _state(runs["block1"].output_dir)
    changed = {k for k in initial if not torch.equal(initial[k], block1[k])}
    assert changed and all(k.startswith(("bert.encoder.layer.2.", "bert.encoder.layer.3.")) for k in changed), \
        sorted(changed)
    merged = merge_blocks([runs["block1"].output_dir, runs["block0"].output_dir], tmp_path / "merged")
    single, got = _state(runs["single"].output_dir), _state(merged)
    assert any(not torch.equal(initial[k], single[k]) for k in single if k.startswith("bert.embeddings."))
    assert single.keys() == got.keys() == initial.keys()
    for key in single:
        torch.testing.assert_close(got[key], single[key], rtol=0, atol=1e-6, msg=key)
    # search-arch reads the merged directory like a single-process run: recipe without block, ranking, weights
    loaded = load_supernet_run(merged)
    assert loaded.recipe.supernet.block is None and loaded.recipe.supernet.blocks == 2
    assert loaded.supernet.scores is not None
    torch.testing.assert_close(loaded.student.bert.embeddings.word_embeddings.weight,
                               got["bert.embeddings.word_embeddings.weight"], rtol=0, atol=0)
    summary = json.loads((merged / "bertpress.json").read_text())
    assert [m["block"] for m in summary["merged_blocks"]] == [0, 1] and summary["merged_blocks"][1]["steps"] == 30
    # the CLI: a second merge into the same directory is refused, --overwrite replaces it
    assert main(["merge-blocks", str(runs["block0"].output_dir), str(runs["block1"].output_dir),
                 "--output-dir", str(merged)]) != 0
    assert main(["merge-blocks", str(runs["block0"].output_dir), str(runs["block1"].output_dir),
                 "--output-dir", str(merged), "--overwrite"]) == 0


def test_bad_merges_are_refused(tmp_path, tiny_teacher_bare, tiny_corpus, capsys):
    base = {"supernet": {"blocks": 2}, "train": {"max_steps": 4, "eval_every": 4, "save_every": 4}}
    runs = {b: distill(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, name=f"b{b}",
                              **{**base, "supernet": {"blocks": 2, "block": b}})).output_dir for b in (0, 1)}
    other = distill(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, name="lr", train={**base["train"], "lr": 2e-3},
                           supernet={"blocks": 2, "block": 1})).output_dir
    out = tmp_path / "out"
    with pytest.raises(BertpressError, match=r"block runs missing: blocks \[1\] of supernet.blocks 2"):
        merge_blocks([runs[0]], out)
    with pytest.raises(BertpressError, match="both trained block 0"):
        merge_blocks([runs[0], runs[0], runs[1]], out)
    with pytest.raises(BertpressError, match=r"ran another recipe than .* \(train.lr: 0.002 vs 0.001\)"):
        merge_blocks([runs[0], other], out)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs[1], unfinished)
    (unfinished / "bertpress.json").unlink()
    with pytest.raises(BertpressError, match="the run has not finished"):
        merge_blocks([runs[0], unfinished], out)
    assert not out.exists(), "nothing is written on a refused merge"
    capsys.readouterr()  # the runs' progress bars
    assert main(["merge-blocks", str(runs[0]), "--output-dir", str(out)]) == 2  # a usage error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "block runs missing" in err[0]


def test_bad_block_recipes_are_refused(tmp_path, tiny_teacher_bare, tiny_corpus):
    def refused(supernet, match):
        with pytest.raises(BertpressError, match=match):
            recipe_from_dict(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet=supernet))

    refused({"block": 0}, r"supernet.block 0: names one of the supernet.blocks blocks.*set supernet.blocks")
    refused({"blocks": 2, "block": 2}, r"use 0..1")
    refused({"blocks": 2, "block": 1, "shrink": {"every": 10}}, "progressive shrinking scores whole sub-networks")
