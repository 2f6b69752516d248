"""Students for budgets out of a tiny supernet run: never over budget, the best-scoring shape within it, extracted
students load and match their slice, the latency table predicts whole models of other depths."""

import json
import math
import random
import subprocess
import sys

import pytest
import torch
import yaml
from nas.test_supernet_training import SPACE, ranked_supernet, recipe
from transformers import AutoModel

from bertpress.errors import BertpressError
from bertpress.nas.latency import LatencyTable, measure_table, validate
from bertpress.nas.space import Arch, ArchSpace
from bertpress.nas.supernet import Supernet
from bertpress.search.arch import ARCH_GA, ArchGenes, Budget, genetic_search, search_arch
from bertpress.train.run import distill


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory, tiny_teacher_bare, tiny_corpus):
    tmp = tmp_path_factory.mktemp("sn")
    return distill(recipe(tmp, tiny_teacher_bare, tiny_corpus, train={"max_steps": 12, "save_every": 0,
                                                                       "eval_every": 0})).output_dir


def test_picks_are_the_best_within_each_budget(supernet_run, tmp_path):
    budgets = [Budget.parse("params=40000"), Budget.parse("params=1"), Budget()]
    report = search_arch(supernet_run, budgets, tmp_path / "out", batches=2)
    records = report["archs"]
    assert report["shapes"] == len(records) == len(ArchSpace(**{k: tuple(v) for k, v in SPACE.items()}).archs())
    assert len({r["params"] for r in records}) > 4 and len({r["heldout_loss"] for r in records}) > 4
    small, none, free = report["picks"]
    fits = [r for r in records if r["params"] <= 40000]
    assert small["params"] <= 40000 and small["heldout_loss"] == min(r["heldout_loss"] for r in fits)
    assert none["arch"] is None
    assert free["heldout_loss"] == min(r["heldout_loss"] for r in records)
    student = AutoModel.from_pretrained(small["dir"]).eval()
    assert sum(p.numel() for p in student.parameters()) == small["params"]
    net = ranked_supernet(supernet_run)
    net.model.eval()
    arch = Arch(small["layers"], small["hidden"], small["heads"], small["ffn"])
    x = torch.randint(5, student.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(student(input_ids=x).last_hidden_state, net(arch, input_ids=x).last_hidden_state,
                              atol=1e-5)
    assert "## Picks" in (tmp_path / "out" / "archs.md").read_text()
    assert json.loads((tmp_path / "out" / "archs.json").read_text())["picks"][0]["arch"] == small["arch"]


def test_latency_budget_through_the_cli(supernet_run, tmp_path):
    env_cmd = [sys.executable, "-m", "bertpress", "search-arch", str(supernet_run), "--budget", "latency_ms=1000",
               "--latency", "--latency-seq", "16", "--threads", "1", "--output-dir", str(tmp_path / "o"), "--batches",
               "1"]
    done = subprocess.run(env_cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "latency<=1000ms: L" in done.stdout
    report = json.loads((tmp_path / "o" / "archs.json").read_text())
    assert all(r["latency_ms"] > 0 for r in report["archs"])
    assert report["picks"][0]["latency_ms"] <= 1000
    missing = subprocess.run([*env_cmd[:7], "--output-dir", str(tmp_path / "p")], capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 2 and "needs latency measured: add --latency" in missing.stderr


def test_latency_table_predicts_other_depths(tiny_teacher_bare):
    from bertpress.models.teacher import load_teacher

    teacher = load_teacher(str(tiny_teacher_bare))
    space = ArchSpace(layers=(1, 4), hidden=(32,), heads=(4,), ffn=(64,))
    net = Supernet(teacher.model, space)
    checks = []
    # stated error: within 35% on a tiny model (timings of ~1 ms on a shared CPU); benchmarks report the real one.
    # Another job on the cores can slow one of the two measurements alone, so the table and its check are measured
    # up to 3 times and the best attempt counts.
    for _ in range(3):
        table = measure_table(space, net.extract, batch=8, seq=32, threads=1, rounds=30)
        again = LatencyTable.from_dict(table.to_dict())
        assert again.predict(Arch(4, 32, 4, 64)) == table.predict(Arch(4, 32, 4, 64))
        checks.extend(validate(table, [Arch(4, 32, 4, 64)], net.extract, rounds=30))
        if abs(checks[-1]["error"]) < 0.35:
            break
    assert min(abs(c["error"]) for c in checks) < 0.35, checks


def test_bad_budgets_are_refused(supernet_run, tmp_path):
    with pytest.raises(BertpressError, match="unknown limit 'size'"):
        Budget.parse("size=3")
    with pytest.raises(BertpressError, match="params needs a number"):
        Budget.parse("params=big")
    plain = yaml.safe_load((supernet_run / "recipe.yaml").read_text())
    plain.pop("supernet")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(plain))
    with pytest.raises(BertpressError, match="not a supernet run"):
        search_arch(tmp_path, [Budget()], tmp_path / "o")
    with pytest.raises(BertpressError, match="at least one --budget"):
        search_arch(supernet_run, [], tmp_path / "o")


def test_arch_genes_encode_every_valid_shape_and_repair_to_the_nearest():
    space = ArchSpace(**{k: tuple(v) for k, v in SPACE.items()})
    genes = ArchGenes(space)
    assert genes.size == len(space.archs()) and sorted(genes.arch(g) for g in genes.all()) == sorted(space.archs())
    assert [genes.gene_max(i) for i in range(4)] == [2, 2, 2, 2]
    assert genes.genome(Arch(4, 32, 4, 64)) == (2, 2, 2, 2) and genes.arch((1, 1, 2, 1)) == Arch(2, 16, 4, 32)
    odd = ArchSpace(layers=(2,), hidden=(16, 24), heads=(3, 4), ffn=(32,))  # 24/3, 16/4, 24/4 valid; 16/3 not
    g = ArchGenes(odd)
    assert g.repair((1, 1, 1, 1)) in g.valid and g.repair((9, 9, 9, 9)) == (1, 2, 2, 1)


def _synthetic():
    """A space of 7,488 shapes with a known score: lower loss for more capacity, for 64-dim heads and an FFN four
    times the hidden width; the budget is on a size proxy."""
    space = ArchSpace(layers=tuple(range(1, 13)), hidden=tuple(range(64, 769, 64)), heads=(1, 2, 4, 8, 12),
                      ffn=tuple(range(256, 3073, 256)))

    def size(a):
        return a.layers * a.hidden * (a.hidden + a.ffn)

    def loss(archs):
        return {a: 1e7 / size(a) + 0.05 * abs(a.hidden / a.heads - 64) / 64 + 0.2 * abs(math.log2(a.ffn / (4 * a.hidden)))
                for a in archs}

    return space, size, loss


def test_genetic_search_stays_in_budget_and_beats_random_sampling_at_equal_evaluations():
    space, size, loss = _synthetic()
    genes, limit = ArchGenes(space), 6e6
    feasible = [a for a in space.archs() if size(a) <= limit]
    best = min(loss(feasible).values())
    ga_best, random_best = [], []
    for seed in range(5):
        scored = []

        def score(archs, scored=scored):
            scored.extend(archs)
            return loss(archs)

        tried = genetic_search(genes, lambda a: size(a) <= limit, score, evaluations=200, seed=seed, params=ARCH_GA)
        assert len(tried) == len(set(tried)) == len(scored) == 200 and all(size(a) <= limit for a in tried)
        ga_best.append(min(loss(tried).values()))
        random_best.append(min(loss(random.Random(seed).sample(feasible, 200)).values()))
    assert len(feasible) > 20 * 200
    gap_ga = sum(g - best for g in ga_best) / 5
    gap_random = sum(r - best for r in random_best) / 5
    assert gap_ga < 0.5 * gap_random, (gap_ga, gap_random)


def test_ga_strategy_scores_at_most_its_evaluations_and_never_returns_a_shape_over_budget(supernet_run, tmp_path):
    budgets = [Budget.parse("params=40000"), Budget()]
    report = search_arch(supernet_run, budgets, tmp_path / "ga", batches=2, strategy="ga", evaluations=5)
    assert report["strategy"] == "ga" and report["scored"] <= 10 < report["shapes"]
    small, free = report["picks"]
    scored = report["archs"]
    assert small["params"] <= 40000
    assert small["heldout_loss"] == min(r["heldout_loss"] for r in scored if r["params"] <= 40000)
    assert free["heldout_loss"] == min(r["heldout_loss"] for r in scored)
    everything = search_arch(supernet_run, budgets, tmp_path / "all", batches=2, strategy="ga", evaluations=100)
    exact = search_arch(supernet_run, budgets, tmp_path / "ex", batches=2)
    assert everything["scored"] == exact["scored"] == exact["shapes"]  # the GA covers a small space entirely
    assert [p["arch"] for p in everything["picks"]] == [p["arch"] for p in exact["picks"]]


def test_proxy_reranks_the_best_shapes_and_picks_distil_further(supernet_run, tmp_path):
    """--proxy-tasks re-ranks each budget's best shapes by held-out loss with the evaluation proxy; --further-steps
    distils the pick on its own, starting from exactly the extracted sub-network (init: pretrained)."""
    from safetensors.torch import load_file
    from search.lms_helpers import write_glue

    data = write_glue(tmp_path / "data")
    proxy = {"tasks": ["stsb-zeroshot"], "top": 3, "data_dir": str(data)}
    report = search_arch(supernet_run, [Budget.parse("params=60000")], tmp_path / "out", batches=2, proxy=proxy,
                         further_steps=4)
    fits = sorted((r for r in report["archs"] if r["params"] <= 60000), key=lambda r: (r["heldout_loss"], r["params"]))
    proxied = [r for r in report["archs"] if "proxy" in r]
    assert [r["arch"] for r in proxied] != [] and {r["arch"] for r in proxied} == {r["arch"] for r in fits[:3]}
    pick = report["picks"][0]
    assert pick["proxy"] == max(r["proxy"] for r in proxied) and pick["arch"] in {r["arch"] for r in fits[:3]}
    assert set(pick["proxy_scores"]) == {"stsb-zeroshot"}
    further = json.loads((tmp_path / "out" / f"{pick['arch']}-distilled" / "bertpress.json").read_text())
    assert further["init"]["name"] == "pretrained" and further["init"]["tensors_copied"] > 10
    assert further["steps"] == pick["further"]["steps"] == 4 and further["recipe"]["supernet"] is None
    start, end = load_file(f"{pick['dir']}/model.safetensors"), load_file(f"{pick['further']['dir']}/model.safetensors")
    assert start.keys() == end.keys() and any(not torch.equal(start[k], end[k]) for k in start)
    md = (tmp_path / "out" / "archs.md").read_text()
    assert "re-ranked by the evaluation proxy (stsb-zeroshot" in md and "distilled 4 steps more" in md


def test_pretrained_init_starts_from_the_model_and_checks_its_shape(supernet_run, tmp_path, tiny_teacher_bare,
                                                                   tiny_corpus):
    from bertpress.init.base import InitContext, initialise
    from bertpress.train.build import build_run

    net = ranked_supernet(supernet_run)
    arch = Arch(2, 16, 2, 32)
    net.extract(arch).save_pretrained(tmp_path / "sub")
    r = recipe(tmp_path, tiny_teacher_bare, tiny_corpus, student={"num_layers": 2, "hidden_size": 16, "num_heads": 2,
                                                                  "intermediate_size": 32, "init": "pretrained",
                                                                  "init_args": {"path": str(tmp_path / "sub")}})
    r.pop("supernet")
    run = build_run(r)
    plan = initialise("pretrained", InitContext(run.teacher, run.student, 0), {"path": str(tmp_path / "sub")})
    assert plan["not_in_source"] == []
    source = AutoModel.from_pretrained(tmp_path / "sub").state_dict()
    assert all(torch.equal(v, source[k]) for k, v in run.student.state_dict().items())
    with pytest.raises(BertpressError, match=r"its num_hidden_layers is 2, the student's 4: set the student's shape"):
        build_run({**r, "student": {**r["student"], "num_layers": 4}})
    with pytest.raises(BertpressError, match="no model there"):
        build_run({**r, "student": {**r["student"], "init_args": {"path": str(tmp_path)}}})
