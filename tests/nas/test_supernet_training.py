"""Supernet distillation through the loop on a tiny teacher: sub-networks learn, the draw is seeded and exact across
a resume, a step changes only the slices it trained, the supernet dir loads and its slices extract."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from bertpress.errors import BertpressError
from bertpress.init.importance import Importance
from bertpress.nas.space import ArchSpace
from bertpress.nas.supernet import Supernet
from bertpress.recipe import recipe_from_dict
from bertpress.train.build import build_run
from bertpress.train.callbacks import Callback
from bertpress.train.metrics import read_metrics
from bertpress.train.run import distill

SPACE = {"layers": [2, 4], "hidden": [16, 32], "heads": [2, 4], "ffn": [32, 64]}


def ranked_supernet(run_dir) -> Supernet:
    """The trained supernet of a run, ranked by the run's stored importance scores."""
    net = Supernet(AutoModel.from_pretrained(run_dir / "student"), ArchSpace(**{k: tuple(v) for k, v in SPACE.items()}))
    net.rank(Importance.from_json(json.loads((run_dir / "etd-importance.json").read_text())["scores"]))
    return net


def recipe(tmp_path, teacher, corpus, name="run", **extra):
    r = {"output_dir": str(tmp_path / name), "seed": 5, "teacher": {"name_or_path": str(teacher)},
         "student": {"num_layers": 4, "init": "etd-impt",
                     "init_args": {"layers": "first", "importance_batches": 2}},
         "data": {"sources": [str(corpus)], "block_size": 32, "validation_fraction": 0.1,
                  "cache_dir": str(tmp_path / "cache")},
         "objective": {"name": "minilm"}, "mapping": {"strategy": "last"},
         "supernet": {"space": SPACE, "importance_batches": 2},
         "train": {"max_steps": 30, "batch_size": 8, "lr": 1e-3, "eval_every": 15, "save_every": 10,
                   "log_every": 5, "num_workers": 0}}
    for k, v in extra.items():
        r[k] = {**r[k], **v} if isinstance(v, dict) and isinstance(r.get(k), dict) else v
    return r


def test_supernet_distillation_trains_largest_and_smallest(tmp_path, tiny_teacher_bare, tiny_corpus):
    result = distill(recipe(tmp_path, tiny_teacher_bare, tiny_corpus))
    valid = read_metrics(result.output_dir / "metrics.jsonl", "valid")
    assert [v["step"] for v in valid] == [0, 15, 30]
    # ranked by importance, the teacher-shaped sub-network of the fresh supernet is the teacher, head for head
    assert valid[0]["loss_largest"] < 1e-6 < valid[0]["loss_smallest"]
    assert valid[-1]["loss_smallest"] < valid[0]["loss_smallest"], valid
    assert valid[-1]["loss_largest"] < 0.1 * valid[0]["loss_smallest"], valid
    train = read_metrics(result.output_dir / "metrics.jsonl", "train")
    assert {"loss_largest", "loss_smallest", "loss_random"} <= train[0].keys()
    assert result.summary["supernet"] == {"shapes": 2 * (2 * 2 + 2 * 2), "largest": "L4-H32-A4-F64",
                                          "smallest": "L2-H16-A2-F32"}
    # the run's student is the supernet, a plain model dir; its slices extract into plain students
    loaded = AutoModel.from_pretrained(result.student_dir).eval()
    net = Supernet(loaded, ArchSpace(**{k: tuple(v) for k, v in SPACE.items()}))
    small = net.extract(net.space.smallest).eval()
    x = torch.randint(5, loaded.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(small(input_ids=x).last_hidden_state, net(net.space.smallest, input_ids=x)
                              .last_hidden_state, atol=1e-5)


def test_resume_is_exact(tmp_path, tiny_teacher_bare, tiny_corpus):
    full = distill(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, "full"))
    cut = recipe(tmp_path, tiny_teacher_bare, tiny_corpus, "cut")
    distill(cut, stop_after=17)  # checkpoint at 10; 7 steps lost, each with its own drawn sub-networks
    resumed = distill(cut, resume=True)
    a = load_file(str(full.student_dir / "model.safetensors"))
    b = load_file(str(resumed.student_dir / "model.safetensors"))
    assert AutoModel.from_pretrained(full.student_dir).config.hidden_dropout_prob == 0.1
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Snapshot(Callback):
    def __init__(self):
        self.before = None

    def on_stage_start(self, distiller, stage):
        self.before = {k: v.clone() for k, v in distiller.student().state_dict().items()}


def test_one_random_step_changes_only_its_slice(tmp_path, tiny_teacher_bare, tiny_corpus):
    r = recipe(tmp_path, tiny_teacher_bare, tiny_corpus, supernet={"sampling": "random"},
               train={"max_steps": 1, "weight_decay": 0.0, "warmup_ratio": 0.0, "eval_every": 0, "save_every": 0})
    snap = _Snapshot()
    result = distill(r, callbacks=[snap])
    after = load_file(str(result.student_dir / "model.safetensors"))
    space = ArchSpace(**{k: tuple(v) for k, v in SPACE.items()})
    arch = space.sample(5, 0, rule="random")[0]
    net = ranked_supernet(result.output_dir)
    plan = net.plan(arch)
    rows, cols = plan.attention_index(0, 8), plan.hidden_dims
    assert arch.hidden < 32 and len(rows) == arch.hidden  # (this seed's draw: a narrow slice)
    assert cols != list(range(arch.hidden))  # ranked: not simply the leading dims
    q = "encoder.layer.0.attention.self.query.weight"
    delta = (after[q] - snap.before[q]).abs()
    outside_rows, outside_cols = torch.ones(32, dtype=torch.bool), torch.ones(32, dtype=torch.bool)
    outside_rows[rows], outside_cols[cols] = False, False
    assert delta[rows][:, cols].sum() > 0
    assert delta[outside_rows].sum() == 0 and delta[:, outside_cols].sum() == 0
    for i in range(arch.layers, 4):  # layers beyond the slice's depth: untouched
        key = f"encoder.layer.{i}.output.dense.weight"
        assert torch.equal(after[key], snap.before[key])


def test_bad_supernet_recipes_are_refused(tmp_path, tiny_teacher_bare, tiny_corpus):
    with pytest.raises(BertpressError, match="supernet: sub-networks of different depths need a mapping rule"):
        recipe_from_dict(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, mapping={"strategy": "explicit",
                                                                                   "layers": [1, 2, 3, 4]}))
    with pytest.raises(BertpressError, match="supernet: trains one stage for now"):
        recipe_from_dict({**recipe(tmp_path, tiny_teacher_bare, tiny_corpus), "stages": [{"steps": 5}],
                          "train": {"batch_size": 8}})
    with pytest.raises(BertpressError, match="learns parameters \\(projections\\)"):
        build_run(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, objective={"name": "tinybert"}))
    with pytest.raises(BertpressError, match="hidden 64 exceeds the supernet's 32"):
        build_run(recipe(tmp_path, tiny_teacher_bare, tiny_corpus,
                         supernet={"space": {**SPACE, "hidden": [16, 64]}}))
    with pytest.raises(BertpressError, match="supernet.order importance ranks the teacher's units, so the supernet "
                                             "must start as the teacher"):
        distill(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, student={"init": "random", "init_args": {}}))
    assert not (tmp_path / "run").exists()


def test_inplace_distillation_teaches_the_others_with_the_largest(tmp_path, tiny_corpus):
    """With dropout off (this test checks the arithmetic, not a real model's behaviour), the smaller sub-networks'
    losses are their objectives against the largest's detached features, not against the teacher's."""
    from bertpress.models.features import FeatureTap, teacher_forward
    from bertpress.nas.training import SupernetModule, _detached

    from tiny_models import save_tiny_teacher

    teacher_dir = save_tiny_teacher(tmp_path / "t", mlm=False, hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0)
    run = build_run(recipe(tmp_path, teacher_dir, tiny_corpus, supernet={"inplace": True},
                           student={"init": "random", "init_args": {}}))
    module = SupernetModule(run.supernet, [s.objective for s in run.stages], seed=5, inplace=True).train()
    objective = run.stages[0].objective
    ids = torch.randint(5, 60, (4, 16), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "position": 3}
    tap = FeatureTap(run.teacher.parts, objective.requests()[0], truncate=True)
    teacher_feats = teacher_forward(tap, input_ids=ids, attention_mask=batch["attention_mask"])
    _, terms = module(batch, teacher_feats)
    space = run.supernet.space
    largest = module._tap(space.largest, teaching=True)(input_ids=ids, attention_mask=batch["attention_mask"])
    small = module.features(space.smallest, batch)
    want, _ = objective.per_arch[space.smallest](small, _detached(largest), batch)
    from_teacher, _ = objective.per_arch[space.smallest](small, teacher_feats, batch)
    assert torch.allclose(terms["loss_smallest"], want.detach(), atol=1e-6)
    assert not torch.allclose(want, from_teacher)
    big, _ = objective.per_arch[space.largest](largest, teacher_feats, batch)
    assert torch.allclose(terms["loss_largest"], big.detach(), atol=1e-6)


def test_inplace_needs_sandwich_and_a_teacher_shaped_largest(tmp_path, tiny_teacher_bare, tiny_corpus):
    with pytest.raises(BertpressError, match="supernet.inplace: .* use sampling: sandwich"):
        recipe_from_dict(recipe(tmp_path, tiny_teacher_bare, tiny_corpus,
                                supernet={"inplace": True, "sampling": "random"}))
    with pytest.raises(BertpressError, match="needs the teacher's 4 layers, hidden 32 and 4 heads"):
        build_run(recipe(tmp_path, tiny_teacher_bare, tiny_corpus,
                         supernet={"inplace": True, "space": {**SPACE, "hidden": [16, 24]}}))


def test_shrinking_drops_the_worst_of_each_size_bin():
    from bertpress.nas.space import Arch
    from bertpress.train.shrinking import choose_dropped

    archs = [Arch(2, 16, 2, f) for f in (8, 16, 24, 32)] + [Arch(4, 32, 4, f) for f in (8, 16, 24, 32)]
    sizes = {a: a.layers * a.hidden * 1000 + a.ffn for a in archs}
    scores = {a: float(i % 4) for i, a in enumerate(archs)}  # ffn 32 worst in each bin, then 24
    keep = {archs[0], archs[-1]}
    assert choose_dropped(archs, scores, sizes, bins=2, fraction=0.5, keep=keep) == sorted(
        [archs[2], archs[3], archs[5], archs[6]])  # the kept largest (ffn 32 of bin 2) is skipped for the next worst
    assert choose_dropped(archs[:2], scores, sizes, bins=2, fraction=0.9, keep=set()) == []  # a bin keeps one
    assert choose_dropped(archs, scores, sizes, bins=1, fraction=0.0, keep=set()) == []


def test_shrinking_is_applied_recorded_and_exact_across_resume(tmp_path, tiny_teacher_bare, tiny_corpus, monkeypatch):
    from bertpress.nas.training import SupernetModule

    drawn = []
    original = SupernetModule.archs

    def archs(self, batch):
        out = original(self, batch)
        if self.training and "position" in batch:
            drawn.append((int(batch["position"]), [a.name for _, a in out]))
        return out

    monkeypatch.setattr(SupernetModule, "archs", archs)
    shrink = {"shrink": {"every": 10, "fraction": 0.5, "bins": 2, "batches": 1}}
    full = distill(recipe(tmp_path, tiny_teacher_bare, tiny_corpus, "full", supernet=shrink))
    events = full.summary["supernet"]["shrinking"]
    assert [e["step"] for e in events] == [10, 20] and events[0]["scored"] == 16 and events[0]["dropped"]
    assert events[1]["scored"] == events[0]["left"]
    gone = set(events[0]["dropped"])
    assert not any(gone & set(names) for pos, names in drawn if pos >= 10)  # one micro-batch per step here
    assert any(gone & set(names) for pos, names in drawn if pos < 10)
    cut = recipe(tmp_path, tiny_teacher_bare, tiny_corpus, "cut", supernet=shrink)
    distill(cut, stop_after=17)  # checkpoint at 10, right after the first shrinking
    resumed = distill(cut, resume=True)
    assert resumed.summary["supernet"]["shrinking"] == events
    a = load_file(str(full.student_dir / "model.safetensors"))
    b = load_file(str(resumed.student_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
